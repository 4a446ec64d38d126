/// \file
/// Host API of tessera's optional CUDA/HIP translation unit (library
/// tessera::cuda, built from src/cuda with -DTESSERA_CUDA=ON or -DTESSERA_HIP=ON):
/// devices and streams, typed device buffers, and one function per kernel.
/// It includes no CUDA or HIP header; docs/cuda.md describes each kernel.
#pragma once

#include "tessera/backend/cuda/attention.hpp"
#include "tessera/backend/cuda/buffer.hpp"
#include "tessera/backend/cuda/device.hpp"
#include "tessera/backend/cuda/ops.hpp"
