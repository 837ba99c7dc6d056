// c10d_shim.cpp: a small C interface to libtorch's c10d (TCPStore, ProcessGroupGloo, ProcessGroupNCCL).
//
// tch has no bindings for torch.distributed, but libtorch ships c10d and exports its symbols; this file is the
// smallest bridge: every function is `extern "C"`, takes opaque handles and `torch::Tensor*` (what tch's
// `Tensor::as_mut_ptr()` returns), and never lets a C++ exception cross into Rust: every entry point catches
// everything and returns an error kind plus a message (allocated with malloc; free it with ipt_dist_free_string).
//
// Gloo's headers come from Debian's libgloo-dev, not from the Gloo compiled into libtorch_cpu.so; that is safe here
// because the shim touches Gloo only through std::shared_ptr<gloo::transport::Device> handles that libtorch creates
// and consumes: no Gloo object is allocated or laid out by this file.
//
// Built by crates/ipt-dist/build.rs with -std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1 -DUSE_C10D_GLOO, and with
// -DUSE_C10D_NCCL -DIPT_DIST_NCCL only when the CUDA libtorch and the CUDA/NCCL headers are present.

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#ifdef IPT_DIST_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

// Error kinds, mirrored by `ErrorKind` in src/ffi.rs.
constexpr int kOk = 0;
constexpr int kOther = 1;      // any other exception (bad argument, CUDA error, ...)
constexpr int kNetwork = 2;    // c10::DistNetworkError: a connection failed or was closed
constexpr int kStore = 3;      // c10::DistStoreError: the rendezvous store failed or timed out
constexpr int kBackend = 4;    // c10::DistBackendError: the collective backend failed (e.g. NCCL watchdog)
constexpr int kDist = 5;       // another c10::DistError

char* dup_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// Run `f`, turning any exception into (kind, message). The most specific c10 classes are tested first.
template <typename F>
int guarded(char** err, F&& f) {
  try {
    f();
    return kOk;
  } catch (const c10::DistNetworkError& e) {
    *err = dup_string(e.what_without_backtrace());
    return kNetwork;
  } catch (const c10::DistStoreError& e) {
    *err = dup_string(e.what_without_backtrace());
    return kStore;
  } catch (const c10::DistBackendError& e) {
    *err = dup_string(e.what_without_backtrace());
    return kBackend;
  } catch (const c10::DistError& e) {
    *err = dup_string(e.what_without_backtrace());
    return kDist;
  } catch (const c10::Error& e) {
    *err = dup_string(e.what_without_backtrace());
    return kOther;
  } catch (const std::exception& e) {
    *err = dup_string(e.what());
    return kOther;
  } catch (...) {
    *err = dup_string("unknown C++ exception");
    return kOther;
  }
}

// Reduce operations, mirrored by `ReduceOp` in src/group.rs.
constexpr int kSum = 0;
constexpr int kAvg = 1;
constexpr int kMax = 2;
constexpr int kMin = 3;

}  // namespace

// One process group: the store it rendezvoused through and the backend doing the collectives.
struct ipt_pg {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int world;
  std::chrono::milliseconds timeout;
  bool nccl;
  int device;  // CUDA device index for NCCL, -1 for Gloo
};

namespace {

c10::intrusive_ptr<c10d::Store> make_store(const char* master_addr, uint16_t port, int rank, int world,
                                           std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions opts;
  opts.port = port;
  opts.isServer = (rank == 0);
  opts.numWorkers = static_cast<std::size_t>(world);
  opts.waitWorkers = true;
  opts.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(std::string(master_addr), opts);
}

at::Tensor& tensor_ref(void* handle) {
  TORCH_CHECK(handle != nullptr, "null tensor handle");
  return *static_cast<at::Tensor*>(handle);
}

// Wait for every work item, in order; the first failure is rethrown after all have been waited for, so that no
// work is left running against tensors Rust may free.
void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works) {
  std::exception_ptr first;
  for (auto& w : works) {
    try {
      w->wait();
    } catch (...) {
      if (!first) {
        first = std::current_exception();
      }
    }
  }
  if (first) {
    std::rethrow_exception(first);
  }
}

c10d::ReduceOp to_c10d(int op) {
  switch (op) {
    case kSum:
    case kAvg:  // Gloo has no AVG: sum, then divide (for NCCL too, so that both backends round alike)
      return c10d::ReduceOp::SUM;
    case kMax:
      return c10d::ReduceOp::MAX;
    case kMin:
      return c10d::ReduceOp::MIN;
    default:
      TORCH_CHECK(false, "unknown reduce op ", op);
  }
}

}  // namespace

extern "C" {

void ipt_dist_free_string(char* s) { std::free(s); }

int ipt_dist_has_nccl() {
#ifdef IPT_DIST_NCCL
  return 1;
#else
  return 0;
#endif
}

// Rendezvous through a TCPStore at master_addr:port (hosted by rank 0) and build a Gloo process group whose
// device binds to `gloo_host` (this machine's address as the peers reach it) or, when `gloo_iface` is non-empty,
// to that network interface. Every operation, and the rendezvous itself, times out after timeout_ms.
int ipt_pg_new_gloo(const char* master_addr, uint16_t port, int rank, int world, int64_t timeout_ms,
                    const char* gloo_host, const char* gloo_iface, ipt_pg** out, char** err) {
  *out = nullptr;
  return guarded(err, [&] {
    TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "rank ", rank, " is not in 0..", world);
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto store = make_store(master_addr, port, rank, world, timeout);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (gloo_iface != nullptr && gloo_iface[0] != '\0') {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(gloo_iface));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(gloo_host));
    }
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
    *out = new ipt_pg{store, backend, rank, world, timeout, false, -1};
  });
}

// The same with NCCL on CUDA device `device`. NCCL's collectives are asynchronous on the GPU; the shim turns on
// TORCH_NCCL_BLOCKING_WAIT (unless the user set it) so that a timed-out collective throws here, in the calling
// thread, instead of the watchdog tearing the process down.
int ipt_pg_new_nccl(const char* master_addr, uint16_t port, int rank, int world, int64_t timeout_ms, int device,
                    ipt_pg** out, char** err) {
  *out = nullptr;
#ifdef IPT_DIST_NCCL
  return guarded(err, [&] {
    TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "rank ", rank, " is not in 0..", world);
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto store = make_store(master_addr, port, rank, world, timeout);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
    *out = new ipt_pg{store, backend, rank, world, timeout, true, device};
  });
#else
  (void)master_addr, (void)port, (void)rank, (void)world, (void)timeout_ms, (void)device;
  *err = dup_string("this build of ipt-dist has no NCCL support (built without the CUDA libtorch and NCCL headers)");
  return kOther;
#endif
}

void ipt_pg_free(ipt_pg* pg) {
  try {
    delete pg;
  } catch (...) {
    // A destructor that throws during teardown after a failure: nothing useful to report, never abort.
  }
}

// All-reduce each of the n tensors in place (one collective per tensor, all in flight at once).
// AVG sums, then divides by the world size; it needs floating-point tensors.
int ipt_pg_all_reduce(ipt_pg* pg, void** tensors, size_t n, int op, char** err) {
  return guarded(err, [&] {
    TORCH_CHECK(pg != nullptr, "null process group");
    at::NoGradGuard no_grad;
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(op);
    opts.timeout = pg->timeout;
    // Non-contiguous tensors are reduced through a contiguous copy and copied back.
    std::vector<at::Tensor> work_tensors;
    work_tensors.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      at::Tensor& t = tensor_ref(tensors[i]);
      TORCH_CHECK(t.defined(), "tensor ", i, " is undefined");
      TORCH_CHECK(op != kAvg || at::isFloatingType(t.scalar_type()) || at::isComplexType(t.scalar_type()),
                  "AVG needs floating-point tensors; tensor ", i, " is ", t.scalar_type());
      work_tensors.push_back(t.is_contiguous() ? t : t.contiguous());
    }
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{work_tensors[i]};
      works.push_back(pg->backend->allreduce(one, opts));
    }
    wait_all(works);
    for (size_t i = 0; i < n; ++i) {
      at::Tensor& t = tensor_ref(tensors[i]);
      if (op == kAvg) {
        work_tensors[i].div_(pg->world);
      }
      if (!work_tensors[i].is_same(t)) {
        t.copy_(work_tensors[i]);
      }
    }
  });
}

// Broadcast each of the n tensors in place from rank `root`.
int ipt_pg_broadcast(ipt_pg* pg, void** tensors, size_t n, int root, char** err) {
  return guarded(err, [&] {
    TORCH_CHECK(pg != nullptr, "null process group");
    TORCH_CHECK(root >= 0 && root < pg->world, "root rank ", root, " is not in 0..", pg->world);
    at::NoGradGuard no_grad;
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = pg->timeout;
    std::vector<at::Tensor> work_tensors;
    work_tensors.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      at::Tensor& t = tensor_ref(tensors[i]);
      TORCH_CHECK(t.defined(), "tensor ", i, " is undefined");
      work_tensors.push_back(t.is_contiguous() ? t : t.contiguous());
    }
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{work_tensors[i]};
      works.push_back(pg->backend->broadcast(one, opts));
    }
    wait_all(works);
    for (size_t i = 0; i < n; ++i) {
      at::Tensor& t = tensor_ref(tensors[i]);
      if (!work_tensors[i].is_same(t)) {
        t.copy_(work_tensors[i]);
      }
    }
  });
}

// Block until every rank has reached the barrier (or the timeout expires).
int ipt_pg_barrier(ipt_pg* pg, char** err) {
  return guarded(err, [&] {
    TORCH_CHECK(pg != nullptr, "null process group");
    c10d::BarrierOptions opts;
    opts.timeout = pg->timeout;
    if (pg->nccl) {
      opts.device_ids = {pg->device};
    }
    auto work = pg->backend->barrier(opts);
    work->wait();
  });
}

}  // extern "C"
