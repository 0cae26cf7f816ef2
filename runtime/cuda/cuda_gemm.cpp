// cuda_gemm.cpp: cuBLASLt matmuls (descriptors per call; caching them by shape is the next
// step), dtype staging for the mixes cuBLASLt lacks, and the cuBLAS fallback.
#include "runtime/cuda/cuda_gemm.h"

#include <climits>
#include <memory>

#include "runtime/cuda/cuda_check.h"

namespace nupipe::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLASLt split-K / stream-K scratch

cudaDataType_t dtype_of(bool bf16) { return bf16 ? CUDA_R_16BF : CUDA_R_32F; }
size_t esize(bool bf16) { return bf16 ? 2 : 4; }

// Elements a row-major [rows, cols] matrix with row stride ld spans, `batch` of them.
int64_t extent(int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch) {
  if (batch == 0 || rows == 0 || cols == 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

// Largest power of two (<= 256) dividing every matrix's address of a strided batch.
uint32_t alignment(const void* p, int64_t stride_bytes, int64_t batch) {
  uint64_t bits = reinterpret_cast<uint64_t>(p) | 256u;
  if (batch > 1) bits |= static_cast<uint64_t>(stride_bytes);
  return static_cast<uint32_t>(bits & (~bits + 1));
}

// RAII for the cuBLASLt descriptors of one call.
struct Desc {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Desc() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

void layout(cublasLtMatrixLayout_t* l, bool bf16, int64_t rows, int64_t cols, int64_t ld,
            int64_t stride, int64_t batch) {
  NUPIPE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(l, dtype_of(bf16), static_cast<uint64_t>(rows),
                                                 static_cast<uint64_t>(cols), ld));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    NUPIPE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        *l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    NUPIPE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        *l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
}

}  // namespace

Gemm::Gemm(cudaStream_t stream, CachingAllocator& alloc) : stream_(stream), alloc_(alloc) {
  cublasLtHandle_t lt = nullptr;
  NUPIPE_CUBLAS_CHECK(cublasLtCreate(&lt));
  lt_ = lt;
  cublasHandle_t blas = nullptr;
  NUPIPE_CUBLAS_CHECK(cublasCreate(&blas));
  blas_ = blas;
  NUPIPE_CUBLAS_CHECK(cublasSetStream(blas, stream_));
  NUPIPE_CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));  // fp32 stays fp32 (no TF32)
  workspace_bytes_ = kWorkspaceBytes;
  workspace_ = alloc_.allocate(workspace_bytes_);
}

Gemm::~Gemm() {
  if (workspace_) alloc_.release(workspace_);
  if (blas_) cublasDestroy(blas_);
  if (lt_) cublasLtDestroy(lt_);
}

bool Gemm::lt_matmul(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, In A,
                     int64_t lda, int64_t sa, In B, int64_t ldb, int64_t sb, float beta, Out C,
                     int64_t ldc, int64_t sc, int64_t batch, const Epilogue* ep) {
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  Desc d;
  NUPIPE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  NUPIPE_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
  NUPIPE_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
  // Stored shapes (before op): A is m x k or k x m, B is k x n or n x k, C is m x n.
  layout(&d.a, A.bf16, ta ? k : m, ta ? m : k, lda, sa, batch);
  layout(&d.b, B.bf16, tb ? n : k, tb ? k : n, ldb, sb, batch);
  layout(&d.c, C.bf16, m, n, ldc, sc, batch);
  void* D = C.p;  // the output; C is read for beta
  if (ep) {
    // Bias (of D's dtype, length m: the row-major output's columns) and, with GELU, the
    // pre-activation written to C's memory as aux while D receives gelu of it.
    const cublasLtEpilogue_t kind = ep->gelu_out ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                                                 : CUBLASLT_EPILOGUE_BIAS;
    NUPIPE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                       &kind, sizeof(kind)));
    NUPIPE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &ep->bias, sizeof(ep->bias)));
    const int32_t bias_type = dtype_of(C.bf16);
    NUPIPE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    if (ep->gelu_out) {
      NUPIPE_CHECK(beta == 0.0f, "gemm: the GELU epilogue writes the pre-activation over C");
      void* aux = C.p;
      NUPIPE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
      NUPIPE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ldc, sizeof(ldc)));
      NUPIPE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &bias_type, sizeof(bias_type)));
      D = ep->gelu_out;
    }
  }
  NUPIPE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d.pref));
  const uint64_t ws = workspace_bytes_;
  NUPIPE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  // The default preference assumes 256-byte aligned matrices; views (attention heads, loss
  // chunks) are not, so state the real alignments.
  const uint32_t al[3] = {alignment(A.p, sa * static_cast<int64_t>(esize(A.bf16)), batch),
                          alignment(B.p, sb * static_cast<int64_t>(esize(B.bf16)), batch),
                          alignment(C.p, sc * static_cast<int64_t>(esize(C.bf16)), batch)};
  NUPIPE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof(uint32_t)));
  NUPIPE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof(uint32_t)));
  NUPIPE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof(uint32_t)));
  const uint32_t al_d = alignment(D, sc * static_cast<int64_t>(esize(C.bf16)), batch);
  NUPIPE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(uint32_t)));

  // Split-K partial sums in the compute type (fp32) only: the in-place and output-type
  // schemes add the parts in C's dtype, which for a bf16 C would round more than once.
  if (C.bf16) {
    const uint32_t mask = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    NUPIPE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        d.pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &mask, sizeof(mask)));
  }

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, d.op, d.a, d.b, d.c, d.c, d.pref,
                                                           1, &result, &found);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) return false;
  const cublasStatus_t ran = cublasLtMatmul(lt_, d.op, &alpha, A.p, d.a, B.p, d.b, &beta, C.p,
                                            d.c, D, d.c, &result.algo, workspace_,
                                            workspace_bytes_, stream_);
  // An epilogue the chosen algorithm still refuses (aux alignment, ld): the caller runs the
  // unfused ops.
  if (ep && (ran == CUBLAS_STATUS_NOT_SUPPORTED || ran == CUBLAS_STATUS_INVALID_VALUE)) {
    return false;
  }
  NUPIPE_CUBLAS_CHECK(ran);
  return true;
}

void Gemm::column_major(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, In A,
                        int64_t lda, int64_t sa, In B, int64_t ldb, int64_t sb, float beta,
                        Out C, int64_t ldc, int64_t sc, int64_t batch) {
  if (lt_matmul(ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch,
                nullptr)) {
    return;
  }
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  ++fallbacks_;
  // The fallback's internals are not ours to constrain: a bf16 C goes through an fp32 copy,
  // rounded back once.
  std::unique_ptr<ScratchBlock> wide;
  Out c = C;
  const int64_t c_elems = extent(n, m, ldc, sc, batch);  // column-major m x n = row-major n x m
  if (C.bf16) {
    wide = std::make_unique<ScratchBlock>(alloc_, sizeof(float) * static_cast<size_t>(c_elems));
    convert(stream_, Out{wide->get(), false}, In{C.p, true}, c_elems);
    c = Out{wide->get(), false};
  }
  NUPIPE_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX &&
                   ldb <= INT_MAX && ldc <= INT_MAX && batch <= INT_MAX,
               "gemm: dimensions beyond the cuBLAS fallback's int range");
  NUPIPE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      blas_, opa, opb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &alpha,
      A.p, dtype_of(A.bf16), static_cast<int>(lda), sa, B.p, dtype_of(B.bf16),
      static_cast<int>(ldb), sb, &beta, c.p, dtype_of(c.bf16), static_cast<int>(ldc), sc,
      static_cast<int>(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (wide) convert(stream_, C, In{wide->get(), false}, c_elems);
}

void Gemm::run(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, In A,
               int64_t lda, int64_t sa, In B, int64_t ldb, int64_t sb, float beta, Out C,
               int64_t ldc, int64_t sc, int64_t batch) {
  NUPIPE_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0, "gemm: negative size");
  NUPIPE_CHECK(ldc >= N && lda >= (ta ? M : K) && ldb >= (tb ? K : N),
               "gemm: a row stride below the row length");
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0) {  // C = beta C (BLAS: beta = 0 clears C, NaN included)
    scale_matrix(stream_, C, M, N, ldc, sc, batch, beta);
    return;
  }
  // Stage the dtype mixes cuBLASLt does not compute: A and B of different dtypes (the bf16
  // one is widened, exactly), then f32 A, B with a bf16 C.
  std::unique_ptr<ScratchBlock> wa, wb, wc;
  auto widen = [&](In x, int64_t elements, std::unique_ptr<ScratchBlock>& buf) {
    buf = std::make_unique<ScratchBlock>(alloc_, sizeof(float) * static_cast<size_t>(elements));
    convert(stream_, Out{buf->get(), false}, x, elements);
    return In{buf->get(), false};
  };
  if (A.bf16 != B.bf16) {
    if (A.bf16) A = widen(A, ta ? extent(K, M, lda, sa, batch) : extent(M, K, lda, sa, batch), wa);
    if (B.bf16) B = widen(B, tb ? extent(N, K, ldb, sb, batch) : extent(K, N, ldb, sb, batch), wb);
  }
  Out c = C;
  const int64_t c_elems = extent(M, N, ldc, sc, batch);
  if (!A.bf16 && C.bf16) {  // fp32 product into an fp32 copy of C, rounded back once
    widen(In{C.p, true}, c_elems, wc);
    c = Out{wc->get(), false};
  }
  // Row-major -> column-major: swap the operands (see the header).
  column_major(tb, ta, N, M, K, alpha, B, ldb, sb, A, lda, sa, beta, c, ldc, sc, batch);
  if (wc) convert(stream_, C, In{wc->get(), false}, c_elems);
}

bool Gemm::linear(int64_t M, int64_t N, int64_t K, In x, In w, In bias, float beta, Out y,
                  Out gelu_out) {
  NUPIPE_CHECK(M > 0 && N > 0 && K > 0, "linear: empty shapes go through run()");
  NUPIPE_CHECK(x.bf16 == w.bf16 && w.bf16 == y.bf16 && bias.bf16 == y.bf16 &&
                   (!gelu_out.p || gelu_out.bf16 == y.bf16),
               "linear: the epilogue path needs every operand in one dtype");
  const Epilogue ep{bias.p, gelu_out.p};
  // Row-major y = x w^T is column-major y^T = w x^T: A = w (transposed), B = x.
  return lt_matmul(true, false, N, M, K, 1.0f, w, K, 0, x, K, 0, beta, y, N, 0, 1, &ep);
}

}  // namespace nupipe::cuda
