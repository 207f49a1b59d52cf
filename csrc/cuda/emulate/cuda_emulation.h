// A CPU emulation of the small part of the CUDA execution model the LGF kernels use, so that the
// device code of csrc/cuda can be executed (and tested) on a machine without a GPU.
//
// The threads of a block run as fibers (ucontext) on one OS thread, one block after the other.
// A fiber runs until it reaches __syncthreads(); when every fiber of the block has arrived, the
// next round starts. Between two barriers the fibers therefore run strictly one after the other
// (in thread order, or in reverse), which is the worst case for a missing barrier: a thread that
// reads shared memory another thread writes in the same phase sees the stale value. Every round
// checks that all threads arrived at the same __syncthreads call (by return address) or all
// exited, so divergent barriers are reported too. __shared__ becomes a function-local static
// (one block runs at a time). __shfl_xor_sync exchanges through a buffer between two barriers,
// so it must be called by every thread of the block (the kernels only call it that way).
//
// What this does not model: nvcc itself, memory-model details beyond barrier ordering, launch
// limits, and the device math functions (lgf_math.h uses std::exp on the host).
#pragma once

#if defined(__CUDACC__)
#error "cuda_emulation.h is for host compilers only"
#endif

#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct EmuDim3 {
  unsigned x = 0, y = 0, z = 0;
};
inline EmuDim3 threadIdx, blockIdx, gridDim, blockDim;

namespace lgf_emu {

// Fiber stacks, allocated once and reused by every block (not zeroed: only touched as used).
inline char* fiber_stack(unsigned k, std::size_t bytes) {
  static std::vector<std::unique_ptr<char[]>> pool;
  static std::size_t pool_bytes = 0;
  if (bytes != pool_bytes) {
    pool.clear();
    pool_bytes = bytes;
  }
  while (pool.size() <= k) pool.emplace_back(new char[bytes]);
  return pool[k].get();
}

struct Block {
  std::vector<ucontext_t> ctx;
  std::vector<int> done;
  std::vector<const void*> at;  // where each thread waits: the return address of __syncthreads
  ucontext_t main{};
  int current = -1;
  const std::function<void()>* body = nullptr;
  std::string error;
};

inline Block* g_block = nullptr;

inline void fiber_entry() {
  Block& b = *g_block;
  (*b.body)();
  b.done[b.current] = 1;  // returning resumes uc_link (the scheduler)
}

// Runs body as blockIdx.x = block of a grid of `grid` blocks with `threads` threads each.
inline void run_block(unsigned block, unsigned grid, unsigned threads, bool reverse,
                      const std::function<void()>& body, std::size_t stack_bytes = 256 * 1024) {
  Block b;
  b.ctx.resize(threads);
  b.done.assign(threads, 0);
  b.at.assign(threads, nullptr);
  b.body = &body;
  g_block = &b;
  blockIdx.x = block;
  gridDim.x = grid;
  blockDim.x = threads;
  for (unsigned k = 0; k < threads; ++k) {
    getcontext(&b.ctx[k]);
    b.ctx[k].uc_stack.ss_sp = fiber_stack(k, stack_bytes);
    b.ctx[k].uc_stack.ss_size = stack_bytes;
    b.ctx[k].uc_link = &b.main;
    makecontext(&b.ctx[k], fiber_entry, 0);
  }
  for (;;) {
    for (unsigned j = 0; j < threads; ++j) {
      const unsigned k = reverse ? threads - 1 - j : j;
      if (b.done[k]) continue;
      b.current = static_cast<int>(k);
      threadIdx.x = k;
      swapcontext(&b.main, &b.ctx[k]);
    }
    const auto finished = std::count(b.done.begin(), b.done.end(), 1);
    if (finished == static_cast<long>(threads)) break;
    if (finished != 0) {
      b.error = "divergent __syncthreads: some threads exited while others wait at a barrier";
      break;
    }
    if (std::any_of(b.at.begin(), b.at.end(), [&](const void* a) { return a != b.at[0]; })) {
      b.error = "divergent __syncthreads: threads wait at different barriers";
      break;
    }
  }
  g_block = nullptr;
  if (!b.error.empty()) throw std::runtime_error(b.error);  // fibers left unfinished are dropped
}

}  // namespace lgf_emu

__attribute__((noinline)) inline void __syncthreads() {
  lgf_emu::Block& b = *lgf_emu::g_block;
  const int k = b.current;
  b.at[k] = __builtin_return_address(0);
  swapcontext(&b.ctx[k], &b.main);
}

// Butterfly shuffle within each warp of 32 threads.
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  static T exchange[1024];
  if (mask != 0xffffffffu) lgf_emu::g_block->error = "partial shuffle masks are not emulated";
  const unsigned me = threadIdx.x;
  exchange[me] = v;
  __syncthreads();
  const T r = exchange[(me & ~31u) | ((me & 31u) ^ static_cast<unsigned>(lane_mask))];
  __syncthreads();
  return r;
}
