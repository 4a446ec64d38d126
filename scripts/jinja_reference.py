"""The reference renderer for chat templates: jinja2 set up as Hugging Face transformers sets it up
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, {% generation %}, its tojson with
ensure_ascii=False, raise_exception and strftime_now), with a fixed clock so renderings are reproducible.
Used by scripts/make-chat-golden and scripts/check-chat-templates (needs: pip install jinja2)."""
import datetime
import json

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime.datetime(2024, 7, 26, 9, 5, 3)  # what strftime_now formats (tests pass the same time)
NOW_TEXT = NOW.strftime("%Y-%m-%d %H:%M:%S")


class Generation(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: HF marks assistant text with it; the body renders as is."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)
    return env


def render(source, **context):
    """(True, text) or (False, error message): a template that raises is a result too."""
    try:
        return True, environment().from_string(source).render(**context)
    except jinja2.exceptions.TemplateSyntaxError as e:
        return False, "syntax error: %s" % e
    except Exception as e:  # noqa: BLE001 - any exception the template raises is its result
        return False, str(e)
