#!/usr/bin/env python3
"""tessera-server end to end, one case per run (CTest starts each):

  api        curl: greedy answers (whole and streamed) equal tessera-llama's own
             greedy output for the same prompt; chat streamed equals chat whole;
             /health, /v1/models, /metrics
  errors     bad requests get 4xx with an OpenAI-style error and harm nothing;
             --api-key; a full queue gets 503 with Retry-After
  load       scripts/bench-serve: 200 requests, 32 at a time, equal prompts must
             get equal text; none lost, duplicated or garbled; /metrics agrees
  lifecycle  a client that goes away frees its sequence; SIGTERM lets a running
             stream finish, refuses new work, and the server exits 0
  openai     the official openai client (pip-installed into a temporary venv;
             skipped where pip has no network) gets the same answers

Usage: test_server.py CASE SERVER LLAMA MODEL SCRIPTS_DIR
Every wait is bounded; the server is killed whatever happens.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

CASE, SERVER, LLAMA, MODEL, SCRIPTS = sys.argv[1:6]
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
N_TOKENS = 24


class Server:
    def __init__(self, *extra):
        self.proc = subprocess.Popen([SERVER, "-m", MODEL, "--port", "0", "-c", "256", *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        self.port = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            if "listening on http://" in line:
                self.port = int(line.rsplit(":", 1)[1])
                break
        if self.port is None:
            self.kill()
            fail("server did not start: " + "".join(self.log))
        # keep draining stderr so the server never blocks on a full pipe
        threading.Thread(target=lambda: [self.log.append(l) for l in self.proc.stderr], daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def request(port, method, path, body=None, headers=None, raw=None, timeout=120):
    """(status, headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
    r = conn.getresponse()
    out = (r.status, dict(r.getheaders()), r.read())
    conn.close()
    return out


def metric(port, name):
    """The value of one unlabelled /metrics sample."""
    for line in request(port, "GET", "/metrics")[2].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    fail(f"/metrics has no {name}")


def curl(url, body, stream=False, headers=()):
    cmd = ["curl", "-sS", "--max-time", "120", "-N", url, "-H", "Content-Type: application/json", "-d", json.dumps(body)]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=130)
    expect(out.returncode == 0, f"curl failed: {out.stderr}")
    if not stream:
        return json.loads(out.stdout)
    return sse_text(out.stdout)


def sse_text(stream, chat=False):
    """Concatenated text of an SSE body; checks it ends with a finish_reason and [DONE]."""
    text, finish, done = "", None, False
    for line in stream.splitlines():
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            continue
        expect(not done, "data after [DONE]")
        chunk = json.loads(data)
        expect("error" not in chunk, f"stream error: {chunk}")
        for c in chunk["choices"]:
            piece = (c.get("delta") or {}).get("content") if chat else c.get("text")
            text += piece or ""
            finish = c.get("finish_reason") or finish
    expect(done and finish, f"stream without finish_reason and [DONE]: {stream[-300:]}")
    return text


def reference(prompt):
    """tessera-llama's greedy continuation of prompt (its stdout echoes the prompt first)."""
    out = subprocess.run([LLAMA, "-m", MODEL, "-p", prompt, "-n", str(N_TOKENS), "--temp", "0", "-c", "256", "-b", "16"],
                         capture_output=True, text=True, timeout=120)
    expect(out.returncode == 0, f"tessera-llama failed: {out.stderr}")
    expect(out.stdout.startswith(prompt), "tessera-llama's output does not start with the prompt")
    return out.stdout[len(prompt):]


def case_api():
    refs = [reference(p) for p in PROMPTS]
    with Server("--parallel", "4", "--exact") as s:
        expect(request(s.port, "GET", "/health")[2] == b'{"status":"ok"}', "/health")
        models = json.loads(request(s.port, "GET", "/v1/models")[2])
        expect(models["data"][0]["id"] == os.path.basename(MODEL), f"/v1/models: {models}")
        # several at once, so they share steps
        results = [None] * (2 * len(PROMPTS))

        def run(i):
            body = {"prompt": PROMPTS[i // 2], "max_tokens": N_TOKENS, "temperature": 0, "stream": i % 2 == 1}
            results[i] = curl(s.url + "/v1/completions", body, stream=i % 2 == 1)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        for i, r in enumerate(results):
            got = r if isinstance(r, str) else r["choices"][0]["text"]
            kind = "streamed" if i % 2 else "whole"
            expect(got == refs[i // 2], f"{kind} answer to {PROMPTS[i // 2]!r}: {got!r}, tessera-llama: {refs[i // 2]!r}")
        whole = results[0]
        expect(whole["object"] == "text_completion" and whole["usage"]["completion_tokens"] > 0, f"envelope: {whole}")
        # chat: streamed == whole, an assistant message, a finish reason
        msgs = [{"role": "user", "content": "What is the capital of France?"}]
        chat = curl(s.url + "/v1/chat/completions", {"messages": msgs, "max_tokens": 32, "temperature": 0})
        msg = chat["choices"][0]["message"]
        expect(msg["role"] == "assistant" and msg["content"], f"chat answer: {chat}")
        out = subprocess.run(["curl", "-sS", "-N", "--max-time", "120", s.url + "/v1/chat/completions", "-d",
                              json.dumps({"messages": msgs, "max_tokens": 32, "temperature": 0, "stream": True})],
                             capture_output=True, text=True, timeout=130)
        expect(sse_text(out.stdout, chat=True) == msg["content"], "chat: streamed answer differs from the whole one")
        # n = 2 with a seed: two sampled choices, each reproducible
        body = {"prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0.9, "seed": 5, "n": 2}
        a, b = curl(s.url + "/v1/completions", body), curl(s.url + "/v1/completions", body)
        expect(len(a["choices"]) == 2 and [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]],
               f"n = 2 with a seed is not reproducible: {a['choices']} vs {b['choices']}")
        # 6 completions, 2 chats, 2 x 2 choices: 12 sequences
        expect(metric(s.port, "tessera_requests_finished_total") == 12, "/metrics: finished requests")
        metrics = request(s.port, "GET", "/metrics")[2].decode()
        expect("tessera_time_to_first_token_seconds{quantile=\"0.99\"}" in metrics, "/metrics has no TTFT p99")
    print("api: ok")


def case_errors():
    with Server("--parallel", "2", "--max-body", "65536", "--api-key", "sesame") as s:
        auth = {"Authorization": "Bearer sesame"}
        st, _, body = request(s.port, "POST", "/v1/completions", {"prompt": "hi"})
        expect(st == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", f"no key: {st} {body}")
        st, _, _ = request(s.port, "POST", "/v1/completions", {"prompt": "hi"}, {"Authorization": "Bearer nope"})
        expect(st == 401, f"wrong key: {st}")
        expect(request(s.port, "GET", "/health")[0] == 200, "/health needs no key")
        cases = [
            (b"{not json", 400, None),
            (b"[1, 2]", 400, None),
            (b'{"prompt": 5}', 400, "prompt"),
            (b'{"prompt": ""}', 400, "prompt"),
            (b'{"prompt": "hi", "max_tokens": -1}', 400, "max_tokens"),
            (b'{"prompt": "hi", "max_tokens": 1e300}', 400, "max_tokens"),
            (b'{"prompt": "hi", "max_tokens": "many"}', 400, "max_tokens"),
            (b'{"prompt": "hi", "temperature": -1}', 400, "temperature"),
            (b'{"prompt": "hi", "temperature": "hot"}', 400, "temperature"),
            (b'{"prompt": "hi", "top_p": 0}', 400, "top_p"),
            (b'{"prompt": "hi", "top_k": 1.5}', 400, "top_k"),
            (b'{"prompt": "hi", "n": 1000}', 400, "n"),
            (b'{"prompt": "hi", "stop": [1, 2]}', 400, "stop"),
            (b'{"prompt": "hi", "stream": "yes"}', 400, "stream"),
            (b'{"prompt": [1, 99999999]}', 400, "prompt"),
            (b'{"prompt": "hi", "seed": 1e40}', 400, "seed"),
            (json.dumps({"prompt": "word " * 400}).encode(), 400, "prompt"),  # over the 256-token context
            (json.dumps({"prompt": "x" * 100000}).encode(), 413, None),        # over --max-body
        ]
        for raw, status, param in cases:
            st, _, body = request(s.port, "POST", "/v1/completions", raw=raw, headers=auth)
            err = json.loads(body).get("error", {})
            expect(st == status and err.get("message"), f"{raw[:60]!r}: {st} {body[:200]!r}")
            expect(param is None or err.get("param") == param, f"{raw[:60]!r}: param {err.get('param')}, want {param}")
        st, _, body = request(s.port, "POST", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]},
                              auth)
        expect(st == 400 and "role" in json.loads(body)["error"]["param"], f"bad role: {st} {body}")
        st, _, body = request(s.port, "POST", "/v1/chat/completions", {"messages": []}, auth)
        expect(st == 400, f"empty messages: {st}")
        st, _, body = request(s.port, "GET", "/v1/nothing", headers=auth)
        expect(st == 404 and json.loads(body)["error"]["message"], f"unknown path: {st} {body}")
        # a declared body of gigabytes is refused before it is read
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        conn.putrequest("POST", "/v1/completions")
        conn.putheader("Content-Length", str(4 << 30))
        conn.putheader("Authorization", "Bearer sesame")
        conn.endheaders()
        conn.send(b'{"prompt": "')
        expect(conn.getresponse().status == 413, "4 GiB body not refused with 413")
        conn.close()
        # bodies of unknown size are refused before reading: chunked, compressed, no length
        for hdrs, want in (({"Transfer-Encoding": "chunked"}, 411), ({"Content-Encoding": "gzip"}, 415), ({}, 411)):
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
            conn.putrequest("POST", "/v1/completions")
            for k, v in {**hdrs, "Authorization": "Bearer sesame"}.items():
                conn.putheader(k, v)
            if "Content-Encoding" in hdrs:
                conn.putheader("Content-Length", "4")
            conn.endheaders()
            if "Content-Encoding" in hdrs:
                conn.send(b"abcd")
            st = conn.getresponse().status
            conn.close()
            expect(st == want, f"body with {hdrs or 'no length'}: {st}, want {want}")
        st, _, body = request(s.port, "POST", "/v1/completions", {"prompt": "hi", "n": 0}, auth)
        expect(st == 400 and json.loads(body)["error"]["param"] == "n", f"n = 0: {st}")
        # after all that, a good request is answered
        st, _, body = request(s.port, "POST", "/v1/completions", {"prompt": "Hello", "max_tokens": 4}, auth)
        expect(st == 200 and json.loads(body)["choices"][0]["finish_reason"], f"good request after bad ones: {st}")
    # overload: one sequence, no queue: a second request meanwhile gets 503 + Retry-After
    with Server("--parallel", "1", "--queue", "0") as s:
        # a content tree nested 400000 deep (under the default 1 MiB) is a 400, not a stack overflow
        deep = b'{"messages": [{"role": "user", "content": [{"type": ' + b"[" * 400000 + b"]" * 400000 + b"}]}]}"
        st, _, body = request(s.port, "POST", "/v1/chat/completions", raw=deep)
        expect(st == 400, f"deeply nested content: {st} {body[:200]!r}")
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps({"prompt": "Count:", "max_tokens": 100, "ignore_eos": True,
                                                            "stream": True}))
        busy = conn.getresponse()
        expect(busy.status == 200 and busy.readline().startswith(b"data:"), "the first request did not start")
        st, headers, body = request(s.port, "POST", "/v1/completions", {"prompt": "hi", "max_tokens": 1})
        expect(st == 503 and headers.get("Retry-After") == "1" and json.loads(body)["error"]["message"],
               f"while the only slot was busy: {st} {headers} {body[:200]!r}")
        expect(sse_text(busy.readline().decode() + busy.read().decode()) != "", "the busy stream did not finish")
        conn.close()
        st, _, _ = request(s.port, "POST", "/v1/completions", {"prompt": "hi", "max_tokens": 1})
        expect(st == 200, f"after the slot came free: {st}")
    print("errors: ok")


def case_load():
    with Server("--parallel", "16", "--exact", "--queue", "64") as s:
        out = subprocess.run([sys.executable, os.path.join(SCRIPTS, "bench-serve"), "--url", s.url, "-n", "200",
                              "--concurrency", "32", "--distinct", "8", "--prompt-words", "4:10", "--output-tokens",
                              "8:8", "--ignore-eos", "--expect-same"], capture_output=True, text=True, timeout=600)
        print(out.stdout, out.stderr)
        expect(out.returncode == 0, "bench-serve found problems")
        expect("200/200 requests ok" in out.stdout, "not every request was answered")
        expect(metric(s.port, "tessera_requests_finished_total") == 200, "/metrics does not count 200 requests")
        expect(metric(s.port, "tessera_generation_tokens_total") == 1600, "/metrics does not count 200 x 8 tokens")
        expect(metric(s.port, "tessera_requests_in_flight") == 0, "requests still in flight after the load")
    print("load: ok")


def case_lifecycle():
    with Server("--parallel", "2", "--shutdown-grace", "60") as s:
        # a client that reads one chunk and goes away: its sequence ends, the server carries on
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        conn.request("POST", "/v1/completions", json.dumps({"prompt": "Count:", "max_tokens": 240, "ignore_eos": True,
                                                            "stream": True}))
        r = conn.getresponse()
        r.readline()
        conn.sock.shutdown(2)
        conn.close()
        deadline = time.time() + 30
        while time.time() < deadline and metric(s.port, "tessera_requests_finished_total") < 1:
            time.sleep(0.05)
        expect(metric(s.port, "tessera_requests_finished_total") == 1, "the abandoned stream's request never ended")
        expect(metric(s.port, "tessera_generation_tokens_total") < 240, "the abandoned request ran to the end")
        # SIGTERM during a stream: the stream completes, new work is refused, exit 0
        result = {}

        def stream():
            st, _, body = request(s.port, "POST", "/v1/completions",
                                  {"prompt": "Count:", "max_tokens": 40, "ignore_eos": True, "stream": True})
            result["status"], result["text"] = st, sse_text(body.decode())

        t = threading.Thread(target=stream)
        t.start()
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            st = request(s.port, "POST", "/v1/completions", {"prompt": "hi", "max_tokens": 1}, timeout=10)[0]
            expect(st == 503, f"a request after SIGTERM got {st}")
        except OSError:
            pass  # already closed: refused is fine too
        t.join(60)
        expect(result.get("status") == 200 and result.get("text"), f"the running stream did not finish: {result}")
        try:
            rc = s.proc.wait(30)
        except subprocess.TimeoutExpired:
            fail("the server did not exit after SIGTERM")
        expect(rc == 0, f"exit status {rc} after SIGTERM: {''.join(s.log)[-500:]}")
    print("lifecycle: ok")


def case_openai():
    with tempfile.TemporaryDirectory() as venv:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
        pip = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "--disable-pip-version-check",
                              "openai>=1.0"], capture_output=True, text=True, timeout=300)
        if pip.returncode != 0:
            print("SKIPPED: pip could not install the openai client (no network?):", pip.stderr.strip()[-300:])
            return
        refs = [reference(p) for p in PROMPTS[:2]]
        with Server("--parallel", "4", "--exact", "--api-key", "sesame") as s:
            script = r"""
import json, sys
from openai import OpenAI, AuthenticationError, BadRequestError
url, prompts = sys.argv[1], json.loads(sys.argv[2])
c = OpenAI(base_url=url + "/v1", api_key="sesame")
out = {"models": [m.id for m in c.models.list()]}
out["whole"] = [c.completions.create(model="m", prompt=p, max_tokens=%d, temperature=0).choices[0].text for p in prompts]
out["stream"] = ["".join(ch.choices[0].text for ch in c.completions.create(model="m", prompt=p, max_tokens=%d,
                 temperature=0, stream=True) if ch.choices) for p in prompts]
chat = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi!"}], max_tokens=16, temperature=0)
out["chat"] = chat.choices[0].message.content
out["chat_stream"] = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(model="m",
                     messages=[{"role": "user", "content": "Hi!"}], max_tokens=16, temperature=0, stream=True) if ch.choices)
try:
    c.completions.create(model="m", prompt="x", max_tokens=-5)
    out["bad"] = "accepted"
except BadRequestError as e:
    out["bad"] = e.status_code
try:
    OpenAI(base_url=url + "/v1", api_key="wrong").models.list()
    out["auth"] = "accepted"
except AuthenticationError as e:
    out["auth"] = e.status_code
print(json.dumps(out))
""" % (N_TOKENS, N_TOKENS)
            r = subprocess.run([os.path.join(venv, "bin", "python"), "-c", script, s.url, json.dumps(PROMPTS[:2])],
                               capture_output=True, text=True, timeout=300)
            expect(r.returncode == 0, f"openai client script failed: {r.stderr[-1500:]}")
            out = json.loads(r.stdout)
            expect(out["models"] == [os.path.basename(MODEL)], f"models: {out['models']}")
            expect(out["whole"] == refs, f"openai whole answers {out['whole']} != tessera-llama {refs}")
            expect(out["stream"] == refs, f"openai streamed answers {out['stream']} != tessera-llama {refs}")
            expect(out["chat"] and out["chat"] == out["chat_stream"], f"chat: {out['chat']!r} vs {out['chat_stream']!r}")
            expect(out["bad"] == 400 and out["auth"] == 401, f"errors: {out['bad']}, {out['auth']}")
    print("openai: ok")


CASES = {"api": case_api, "errors": case_errors, "load": case_load, "lifecycle": case_lifecycle, "openai": case_openai}
if __name__ == "__main__":
    if not os.path.exists(MODEL):
        print(f"SKIPPED: no default model at {MODEL} (scripts/fetch-model)")
        sys.exit(0)
    CASES[CASE]()
