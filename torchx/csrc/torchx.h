/* torchx: the C face of sli2vol's ops over libtorch (plain C, for cgo).
 *
 * A tensor handle is an `at::Tensor*`, the same handle gotorch's Tensor holds, so tensors
 * pass freely between gotorch and torchx. Every function that can fail returns NULL on
 * success or a malloc'd message (free it with free()); C++ exceptions never cross this
 * boundary. Results are new handles owned by the caller (free with tx_free).
 */
#ifndef SLI2VOL_TORCHX_H
#define SLI2VOL_TORCHX_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void *TxTensor;
typedef void *TxOptim;
typedef char *TxErr;

/* Every option code Go passes to the shim is one of these enums (Go defines its typed
   constants from them, so the numbering lives here only). */

/* tx_pad, as in torch.nn.functional.pad */
typedef enum { TX_PAD_CONSTANT, TX_PAD_REPLICATE, TX_PAD_REFLECT } TxPadMode;
/* tx_unary */
typedef enum {
  TX_EXP, TX_LOG, TX_SQRT, TX_ABS, TX_NEG, TX_SIGMOID, TX_TANH, TX_RELU, TX_GELU,
  TX_RSQRT, TX_SIGN, TX_FLOOR, TX_ROUND
} TxUnaryOp;
/* tx_binary and tx_scalar */
typedef enum {
  TX_ADD, TX_SUB, TX_MUL, TX_DIV, TX_MAXIMUM, TX_MINIMUM, TX_EQ, TX_GT, TX_LT
} TxBinaryOp;
/* tx_reduce */
typedef enum { TX_SUM, TX_MEAN, TX_AMAX, TX_AMIN } TxReduceOp;
/* tx_interpolate */
typedef enum { TX_NEAREST, TX_BILINEAR, TX_TRILINEAR } TxInterpMode;
/* Loss reductions: the numbering of at::Reduction (checked in nn.cc). */
typedef enum { TX_REDUCTION_NONE, TX_REDUCTION_MEAN, TX_REDUCTION_SUM } TxReduction;
/* tx_set_affinity_strategy (see affinity.cc and Go's AffinityStrategy) */
typedef enum {
  TX_AFFINITY_AUTO, TX_AFFINITY_ROWS, TX_AFFINITY_SHIFTS, TX_AFFINITY_UNFOLD
} TxAffinityStrategy;
/* tx_optim_new */
typedef enum { TX_ADAMW, TX_SGD } TxOptimKind;
/* tx_set_optim_foreach: multi-tensor updates when every parameter is on CUDA, always, never */
typedef enum { TX_FOREACH_AUTO, TX_FOREACH_ON, TX_FOREACH_OFF } TxForeachMode;

/* ---- runtime ------------------------------------------------------------------------- */
const char *tx_libtorch_version(void);
int tx_cuda_available(void);
int tx_cuda_device_count(void);
int tx_cudnn_available(void);
TxErr tx_cuda_device_name(int index, char *buf, int buflen);
TxErr tx_cuda_mem_info(int index, int64_t *free_bytes, int64_t *total_bytes);
TxErr tx_cuda_set_device(int index);
void tx_manual_seed(uint64_t seed);
void tx_set_num_threads(int n);
int tx_get_num_threads(void);
/* Sets grad mode on this OS thread; returns the previous mode. */
int tx_set_grad_enabled(int enabled);
int tx_is_grad_enabled(void);

/* Autocast on a device ("cpu", "cuda") to dtype, for this OS thread; on=0 ends it. */
TxErr tx_autocast(const char *device, int on, int8_t dtype);
int tx_autocast_enabled(const char *device);
void tx_set_cudnn_benchmark(int on);
int tx_cudnn_benchmark(void);

/* ---- tensors: life, data, metadata ---------------------------------------------------- */
void tx_free(TxTensor t);
TxErr tx_from_data(const void *data, int8_t dtype, const int64_t *shape, int ndim,
                   TxTensor *out);
TxErr tx_from_data_on(const void *data, int8_t dtype, const int64_t *shape, int ndim,
                      const char *device, TxTensor *out);
TxErr tx_copy_out(TxTensor t, int8_t dtype, void *dst, int64_t nbytes);
TxErr tx_numel(TxTensor t, int64_t *out);
TxErr tx_dtype(TxTensor t, int8_t *out);
TxErr tx_device(TxTensor t, char *buf, int buflen);
TxErr tx_empty_like_zeros(const int64_t *shape, int ndim, int8_t dtype, const char *device,
                          TxTensor *out);
TxErr tx_full(const int64_t *shape, int ndim, double value, int8_t dtype, const char *device,
              TxTensor *out);
TxErr tx_randn(const int64_t *shape, int ndim, int8_t dtype, const char *device,
               TxTensor *out);
TxErr tx_rand(const int64_t *shape, int ndim, int8_t dtype, const char *device,
              TxTensor *out);
TxErr tx_to(TxTensor t, const char *device, int8_t dtype, TxTensor *out);
TxErr tx_clone(TxTensor t, TxTensor *out);
TxErr tx_contiguous(TxTensor t, TxTensor *out);
TxErr tx_detach(TxTensor t, TxTensor *out);
TxErr tx_set_requires_grad(TxTensor t, int on);
TxErr tx_requires_grad(TxTensor t, int *out);
TxErr tx_grad(TxTensor t, TxTensor *out); /* *out NULL when no gradient */
TxErr tx_backward(TxTensor t);
TxErr tx_copy_(TxTensor dst, TxTensor src); /* in place, under no-grad */
TxErr tx_add_scalar_(TxTensor t, double s); /* in place, under no-grad */
TxErr tx_item(TxTensor t, double *out);
/* 4D tensors in channels-last memory order (others unchanged) */
TxErr tx_channels_last(TxTensor t, TxTensor *out);
int tx_is_channels_last(TxTensor t);

/* ---- shape ---------------------------------------------------------------------------- */
TxErr tx_cat(TxTensor *ts, int n, int64_t dim, TxTensor *out);
TxErr tx_stack(TxTensor *ts, int n, int64_t dim, TxTensor *out);
TxErr tx_narrow(TxTensor t, int64_t dim, int64_t start, int64_t length, TxTensor *out);
TxErr tx_slice(TxTensor t, int64_t dim, int64_t start, int64_t end, int64_t step,
               TxTensor *out);
TxErr tx_reshape(TxTensor t, const int64_t *shape, int ndim, TxTensor *out);
TxErr tx_permute(TxTensor t, const int64_t *dims, int ndim, TxTensor *out);
TxErr tx_unsqueeze(TxTensor t, int64_t dim, TxTensor *out);
TxErr tx_squeeze(TxTensor t, int64_t dim, TxTensor *out);
/* pads as in torch.nn.functional.pad */
TxErr tx_pad(TxTensor t, const int64_t *pads, int npads, TxPadMode mode, double value,
             TxTensor *out);
TxErr tx_flip(TxTensor t, const int64_t *dims, int ndims, TxTensor *out);

/* ---- elementwise ---------------------------------------------------------------------- */
TxErr tx_unary(TxTensor t, TxUnaryOp op, TxTensor *out);
TxErr tx_binary(TxTensor a, TxTensor b, TxBinaryOp op, TxTensor *out);
TxErr tx_scalar(TxTensor a, double s, TxBinaryOp op, TxTensor *out);
TxErr tx_pow(TxTensor t, double exponent, TxTensor *out);
TxErr tx_clamp(TxTensor t, double lo, double hi, int has_lo, int has_hi, TxTensor *out);
TxErr tx_leaky_relu(TxTensor t, double slope, TxTensor *out);
TxErr tx_where(TxTensor cond, TxTensor a, TxTensor b, TxTensor *out);

/* ---- reductions and normalisations over a dim ----------------------------------------- */
/* ndims 0 means all dims */
TxErr tx_reduce(TxTensor t, TxReduceOp op, const int64_t *dims, int ndims, int keepdim,
                TxTensor *out);
TxErr tx_max_dim(TxTensor t, int64_t dim, int keepdim, TxTensor *values, TxTensor *indices);
TxErr tx_argmax(TxTensor t, int64_t dim, int keepdim, TxTensor *out);
TxErr tx_softmax(TxTensor t, int64_t dim, int log, TxTensor *out);

/* ---- linear algebra and convolution --------------------------------------------------- */
TxErr tx_matmul(TxTensor a, TxTensor b, TxTensor *out);
TxErr tx_bmm(TxTensor a, TxTensor b, TxTensor *out);
/* at::convolution: 2D or 3D by the weight's rank; bias may be NULL */
TxErr tx_convolution(TxTensor x, TxTensor w, TxTensor b, const int64_t *stride,
                     const int64_t *padding, const int64_t *dilation, int nsp,
                     int transposed, const int64_t *output_padding, int64_t groups,
                     TxTensor *out);

/* ---- normalisation layers (weight/bias/running stats may be NULL) --------------------- */
TxErr tx_batch_norm(TxTensor x, TxTensor w, TxTensor b, TxTensor rmean, TxTensor rvar,
                    int training, double momentum, double eps, TxTensor *out);
TxErr tx_instance_norm(TxTensor x, TxTensor w, TxTensor b, double eps, TxTensor *out);
TxErr tx_group_norm(TxTensor x, int64_t groups, TxTensor w, TxTensor b, double eps,
                    TxTensor *out);
TxErr tx_layer_norm(TxTensor x, const int64_t *shape, int nshape, TxTensor w, TxTensor b,
                    double eps, TxTensor *out);

/* ---- resampling and patches ----------------------------------------------------------- */
TxErr tx_interpolate(TxTensor x, const int64_t *size, int nsize, TxInterpMode mode,
                     int align_corners, TxTensor *out);
TxErr tx_unfold2d(TxTensor x, const int64_t *kernel, const int64_t *dilation,
                  const int64_t *padding, const int64_t *stride, TxTensor *out);
TxErr tx_one_hot(TxTensor t, int64_t num_classes, TxTensor *out);
TxErr tx_dropout(TxTensor t, double p, int train, TxTensor *out);

/* ---- losses ---------------------------------------------------------------------------- */
TxErr tx_l1_loss(TxTensor a, TxTensor b, TxReduction reduction, TxTensor *out);
TxErr tx_mse_loss(TxTensor a, TxTensor b, TxReduction reduction, TxTensor *out);
TxErr tx_smooth_l1_loss(TxTensor a, TxTensor b, TxReduction reduction, double beta,
                        TxTensor *out);
TxErr tx_cross_entropy(TxTensor logits, TxTensor target, TxTensor weight,
                       TxReduction reduction, int64_t ignore_index, double label_smoothing,
                       TxTensor *out);

/* ---- fused local affinity (autograd; CPU and CUDA) ------------------------------------ */
/* q, k: B×C×H×W → B×(2R+1)²×H×W;  a: B×(2R+1)²×H×W, m: B×C×H×W → B×C×H×W */
TxErr tx_correlation(TxTensor q, TxTensor k, int64_t radius, TxTensor *out);
TxErr tx_aggregate(TxTensor a, TxTensor m, int64_t radius, TxTensor *out);
void tx_set_affinity_strategy(TxAffinityStrategy s);

/* ---- operator counts (profiling) ---- */
TxErr tx_opcount_start(int timed);
TxErr tx_opcount_stop(char **out);

/* The host allocator policy (hostalloc.cc): keep up to TX_HOST_TRIM_THRESHOLD bytes of freed
   heap, map blocks with mmap from TX_HOST_MMAP_THRESHOLD bytes. */
#define TX_HOST_MMAP_THRESHOLD (32 << 20)
#define TX_HOST_TRIM_THRESHOLD (1 << 30)
int tx_host_alloc_policy(int64_t mmap_threshold, int64_t trim_threshold);
int64_t tx_host_free_bytes(void);

/* ---- optimizers ----------------------------------------------------------------------- */
TxErr tx_optim_new(TxOptimKind kind, TxTensor *params, int n, double lr, double beta1, double beta2,
                   double eps, double weight_decay, double momentum, double dampening,
                   int nesterov, TxOptim *out);
TxErr tx_optim_step(TxOptim o);
void tx_set_optim_foreach(TxForeachMode mode);
int64_t tx_optim_foreach_steps(void);
TxErr tx_optim_zero_grad(TxOptim o);
/* Scales the gradients of params so that their joint L2 norm is at most max_norm, as
   torch.nn.utils.clip_grad_norm_ does; *norm receives the norm before clipping. */
TxErr tx_clip_grad_norm(TxTensor *params, int n, double max_norm, double *norm);
TxErr tx_optim_set_lr(TxOptim o, double lr);
TxErr tx_optim_get_lr(TxOptim o, double *out);
/* State (moments, momentum buffers, step counts) as bytes in libtorch's archive format. */
TxErr tx_optim_save(TxOptim o, char **buf, int64_t *len);
TxErr tx_optim_load(TxOptim o, const char *buf, int64_t len);
void tx_optim_free(TxOptim o);

/* ---- TorchScript ------------------------------------------------------------------------ */
/* A module with the named tensors (parameters where is_param[i]) and methods from source. */
TxErr tx_jit_save(const char **names, TxTensor *ts, const int *is_param, int n, const char *source,
                  const char *path);
/* torch::jit::load(path) and forward(inputs...) -> tensor */
TxErr tx_jit_run(const char *path, TxTensor *inputs, int n, TxTensor *out);

#ifdef __cplusplus
}
#endif
#endif
