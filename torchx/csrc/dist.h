/* torchx's distributed face: libtorch's own c10d (TCPStore rendezvous, ProcessGroupGloo /
 * ProcessGroupNCCL, the DDP Reducer) in plain C for cgo. Conventions as torchx.h: NULL on
 * success or a malloc'd message; handles are owned by the caller and freed with the
 * matching *_free.
 */
#ifndef SLI2VOL_TORCHX_DIST_H
#define SLI2VOL_TORCHX_DIST_H

#include "torchx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void *TxStore;
typedef void *TxGroup;
typedef void *TxReducer;

/* Process-group backends. */
typedef enum { TX_BACKEND_GLOO, TX_BACKEND_NCCL } TxBackend;

/* Whether this libtorch build has a backend (its headers were found at build time). */
int tx_dist_has_backend(TxBackend b);

/* A TCPStore: one process serves it on port (is_server: rank 0, or torchrun's agent), every
   rank connects; world ranks are awaited for up to timeout_ms. A non-empty prefix scopes
   every key (torchrun's agent store: "/worker/attempt_N/"). */
TxErr tx_store_new(const char *host, int port, int is_server, int world, int64_t timeout_ms,
                   const char *prefix, TxStore *out);
void tx_store_free(TxStore s);
/* A key's value (a short string), and whether the key exists (found), waiting at most
   timeout_ms for its value. */
TxErr tx_store_set(TxStore s, const char *key, const char *value);
TxErr tx_store_get(TxStore s, const char *key, int64_t timeout_ms, char *buf, int buflen, int *found);

/* A process group over the store; ops time out after timeout_ms. */
TxErr tx_group_new(TxStore s, TxBackend b, int rank, int world, int64_t timeout_ms,
                   TxGroup *out);
void tx_group_free(TxGroup g);

/* Collectives on tensors of every rank (in place, waited for). */
TxErr tx_group_broadcast(TxGroup g, TxTensor *ts, int n, int root);
TxErr tx_group_allreduce_sum(TxGroup g, TxTensor *ts, int n);
TxErr tx_group_allreduce_max(TxGroup g, TxTensor *ts, int n);
TxErr tx_group_barrier(TxGroup g);
/* Fails unless every rank has params of the same number, shapes and types (as DDP checks). */
TxErr tx_group_verify(TxGroup g, TxTensor *params, int n);

/* Batch normalisation in training with statistics over every rank's batch (SyncBatchNorm);
   updates the running statistics in place; differentiable (its backward all-reduces too). */
TxErr tx_sync_batch_norm(TxGroup g, TxTensor x, TxTensor weight, TxTensor bias, TxTensor running_mean,
                         TxTensor running_var, double momentum, double eps, TxTensor *out);

/* DDP's gradient reducer over params: bucketed all-reduce of gradient averages launched from
   autograd hooks as gradients become ready. */
TxErr tx_reducer_new(TxGroup g, TxTensor *params, int n, int64_t bucket_cap_bytes,
                     TxReducer *out);
/* Before a training forward pass (rebuilds buckets in gradient order after the first). */
TxErr tx_reducer_prepare_forward(TxReducer r);
/* After the forward pass, before backward. */
TxErr tx_reducer_prepare_backward(TxReducer r);
void tx_reducer_free(TxReducer r);

#ifdef __cplusplus
}
#endif
#endif
