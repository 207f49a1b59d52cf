// A CPU emulation of the small part of the CUDA execution model the LGF kernels use, so that the
// device code of csrc/cuda can be executed (and tested) on a machine without a GPU. Test support
// only: nothing here is part of the built extension.
//
// The threads of a block run as fibers (ucontext) on one OS thread, one block after the other.
// A fiber runs until it reaches __syncthreads(); when every fiber of the block has arrived, the
// next round starts. Between two barriers the fibers therefore run strictly one after the other
// (in thread order, or in reverse), which is the worst case for a missing barrier: a thread that
// reads shared memory another thread writes in the same phase sees the stale value. Every round
// checks that all threads arrived at the same __syncthreads (by source line: the host compiler
// may duplicate code, e.g. unswitch a loop, so return addresses would differ) or all exited, so
// divergent barriers are reported too.
//
// Shared memory is the launch's dynamic shared memory only (kernels must not declare static
// __shared__ arrays: __shared__ is left undefined here, so such a kernel does not compile), and
// it is filled with NaN bytes (0xff) at the start of every block, so a read of shared memory no
// thread of the block wrote shows up as NaN. cp.async is a synchronous copy (or zero fill).
// __shfl_xor_sync and __shfl_down_sync exchange through a buffer between two barriers, so they
// must be called by every thread of the block (the kernels only call them that way).
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
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define LGF_EMU_ASAN 1
#endif

#define LGF_CUDA_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct EmuDim3 {
  unsigned x = 0, y = 0, z = 0;
};
inline EmuDim3 threadIdx, blockIdx, gridDim, blockDim;

namespace lgf_emu {

constexpr std::size_t kStackBytes = 256 * 1024;

// Fiber stacks, allocated once and reused by every block (not zeroed: only touched as used).
inline char* fiber_stack(unsigned k) {
  static std::vector<std::unique_ptr<char[]>> pool;
  while (pool.size() <= k) pool.emplace_back(new char[kStackBytes]);
  return pool[k].get();
}

struct Block {
  std::vector<ucontext_t> ctx;
  std::vector<int> done;
  std::vector<const void*> at;  // where each thread waits: the source line of its __syncthreads
  ucontext_t main{};
  int current = -1;
  const std::function<void()>* body = nullptr;
  std::string error;
  // AddressSanitizer's view of the stack switches (unused without ASan).
  void* main_fake = nullptr;
  std::vector<void*> fiber_fake;
  const void* main_bottom = nullptr;
  std::size_t main_size = 0;
};

inline Block* g_block = nullptr;
inline std::vector<unsigned char> g_smem;  // the launch's dynamic shared memory

inline void* dynamic_smem() { return g_smem.data(); }

// cp.async: `copied` bytes from src, zeros up to `bytes`.
inline void async_copy(void* dst, const void* src, int copied, int bytes) {
  if (copied > 0) std::memcpy(dst, src, copied);
  if (copied < bytes) std::memset(static_cast<char*>(dst) + copied, 0, bytes - copied);
}

// Stack-switch annotations for ASan: `to_bottom` / `to_size` is the stack we switch to; a
// fiber that finishes passes save = nullptr (its fake stack is released).
inline void before_switch(void** save, const void* to_bottom, std::size_t to_size) {
#if defined(LGF_EMU_ASAN)
  __sanitizer_start_switch_fiber(save, to_bottom, to_size);
#else
  (void)save, (void)to_bottom, (void)to_size;
#endif
}
inline void after_switch(void* save, const void** from_bottom = nullptr, std::size_t* from_size = nullptr) {
#if defined(LGF_EMU_ASAN)
  __sanitizer_finish_switch_fiber(save, from_bottom, from_size);
#else
  (void)save, (void)from_bottom, (void)from_size;
#endif
}

inline void fiber_entry() {
  Block& b = *g_block;
  after_switch(nullptr, &b.main_bottom, &b.main_size);
  (*b.body)();
  b.done[b.current] = 1;
  before_switch(nullptr, b.main_bottom, b.main_size);  // returning resumes uc_link (the scheduler)
}

// Runs one round of every unfinished fiber; false when all are done.
inline bool run_round(Block& b, unsigned threads, bool reverse) {
  for (unsigned j = 0; j < threads; ++j) {
    const unsigned k = reverse ? threads - 1 - j : j;
    if (b.done[k]) continue;
    b.current = static_cast<int>(k);
    threadIdx.x = k;
    before_switch(&b.main_fake, fiber_stack(k), kStackBytes);
    swapcontext(&b.main, &b.ctx[k]);
    after_switch(b.main_fake);
  }
  const auto finished = std::count(b.done.begin(), b.done.end(), 1);
  if (finished == static_cast<long>(threads)) return false;
  if (finished != 0) {
    b.error = "divergent __syncthreads: some threads exited while others wait at a barrier";
  } else if (std::any_of(b.at.begin(), b.at.end(), [&](const void* a) { return a != b.at[0]; })) {
    b.error = "divergent __syncthreads: threads wait at different barriers";
  }
  return b.error.empty();
}

// Runs body as blockIdx.x = block of a grid of `grid` blocks with `threads` threads each.
inline void run_block(unsigned block, unsigned grid, unsigned threads, bool reverse,
                      const std::function<void()>& body) {
  Block b;
  b.ctx.resize(threads);
  b.done.assign(threads, 0);
  b.at.assign(threads, nullptr);
  b.fiber_fake.assign(threads, nullptr);
  b.body = &body;
  g_block = &b;
  blockIdx.x = block;
  gridDim.x = grid;
  blockDim.x = threads;
  std::fill(g_smem.begin(), g_smem.end(), 0xff);  // NaN in every floating dtype
  for (unsigned k = 0; k < threads; ++k) {
    getcontext(&b.ctx[k]);
    b.ctx[k].uc_stack.ss_sp = fiber_stack(k);
    b.ctx[k].uc_stack.ss_size = kStackBytes;
    b.ctx[k].uc_link = &b.main;
    makecontext(&b.ctx[k], fiber_entry, 0);
  }
  while (run_round(b, threads, reverse)) {
  }
  g_block = nullptr;
  if (!b.error.empty()) throw std::runtime_error(b.error);  // fibers left unfinished are dropped
}

// A launch of `grid` blocks of `threads` threads with `smem_bytes` of dynamic shared memory;
// blocks run in index order or in reverse, the threads of a block likewise.
inline void launch(unsigned grid, unsigned threads, std::size_t smem_bytes, bool reverse_threads,
                   bool reverse_blocks, const std::function<void()>& body) {
  g_smem.assign(smem_bytes + 16, 0xff);
  for (unsigned j = 0; j < grid; ++j) {
    run_block(reverse_blocks ? grid - 1 - j : j, grid, threads, reverse_threads, body);
  }
}

}  // namespace lgf_emu

namespace lgf_emu {

// A barrier: `where` identifies the __syncthreads in the source (a string literal, one per line).
inline void sync_at(const char* where) {
  Block& b = *g_block;
  const int k = b.current;
  b.at[k] = where;
  before_switch(&b.fiber_fake[k], b.main_bottom, b.main_size);
  swapcontext(&b.ctx[k], &b.main);
  after_switch(b.fiber_fake[k]);
}

}  // namespace lgf_emu

#define LGF_EMU_STR2(x) #x
#define LGF_EMU_STR(x) LGF_EMU_STR2(x)
#define __syncthreads() lgf_emu::sync_at(__FILE__ ":" LGF_EMU_STR(__LINE__))

namespace lgf_emu {

// A warp shuffle: every thread offers v and gets the value of lane source(lane) of its warp
// (its own value when that lane is outside the warp). Exchanged through a buffer between two
// barriers, so all threads of the block must call it (the kernels only call it that way).
template <typename T, typename Source>
T shuffle(unsigned mask, T v, Source source) {
  static T exchange[1024];
  if (mask != 0xffffffffu) g_block->error = "partial shuffle masks are not emulated";
  const unsigned me = threadIdx.x, lane = me & 31u, from = source(lane);
  exchange[me] = v;
  __syncthreads();
  const T r = from < 32 ? exchange[(me & ~31u) | from] : v;
  __syncthreads();
  return r;
}

}  // namespace lgf_emu

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  return lgf_emu::shuffle(mask, v, [&](unsigned lane) { return lane ^ static_cast<unsigned>(lane_mask); });
}

template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
  return lgf_emu::shuffle(mask, v, [&](unsigned lane) { return lane + delta; });
}
