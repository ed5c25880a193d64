package dist

// #cgo CFLAGS: -I${SRCDIR}/../torchx/csrc
// #cgo LDFLAGS: -L${SRCDIR}/../build/lib -Wl,-rpath,${SRCDIR}/../build/lib -ltorchx
// #include <stdlib.h>
// #include "dist.h"
import "C"

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/sli2vol/sli2vol/torchx"
)

// Backend is a process group's transport.
type Backend int

const (
	Gloo Backend = C.TX_BACKEND_GLOO // CPU tensors (and CUDA ones, through host copies)
	NCCL Backend = C.TX_BACKEND_NCCL // CUDA tensors, GPU to GPU
)

func (b Backend) String() string {
	if b == NCCL {
		return "nccl"
	}
	return "gloo"
}

// ParseBackend reads dist.backend: "gloo", "nccl", or "auto" (NCCL on CUDA, Gloo otherwise).
func ParseBackend(name, device string) (Backend, error) {
	switch name {
	case "gloo":
		return Gloo, nil
	case "nccl":
		return NCCL, nil
	case "auto", "":
		if len(device) >= 4 && device[:4] == "cuda" && Available(NCCL) {
			return NCCL, nil
		}
		return Gloo, nil
	}
	return Gloo, fmt.Errorf("dist.backend is %q, want auto, gloo or nccl", name)
}

// Available reports whether this libtorch build has the backend.
func Available(b Backend) bool { return C.tx_dist_has_backend(C.TxBackend(b)) != 0 }

// Group is a process group: every rank of a launch, joined through a TCPStore that rank 0
// serves at MASTER_ADDR:MASTER_PORT.
type Group struct {
	store C.TxStore
	pg    C.TxGroup
	rank  int
	size  int
	dev   string // where the group's own small tensors live: NCCL reduces only CUDA tensors
	// Each rank stamps the store every heartbeatEvery; a rank whose stamp is stale when a
	// collective fails is the one that was lost (Gloo's own error names a peer's address).
	stopBeat   chan struct{}
	beatDone   chan struct{}
	agentStore bool // torchrun's agent serves the store (else rank 0 does)
	firsts     int  // calls of First so far: each waits on its own store key
}

const heartbeatEvery = time.Second

// Init joins the process group e describes; it waits up to timeout for every rank, and
// collectives later fail after timeout instead of hanging.
func Init(e Env, b Backend, timeout time.Duration) (*Group, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(e.MasterAddr, strconv.Itoa(e.MasterPort))
	host := C.CString(e.MasterAddr)
	defer C.free(unsafe.Pointer(host))
	g := &Group{rank: e.Rank, size: e.WorldSize, dev: "cpu"}
	if b == NCCL {
		g.dev = "cuda:" + strconv.Itoa(e.LocalRank)
	}
	ms := C.int64_t(timeout.Milliseconds())
	prefix := ""
	if e.AgentStore {
		prefix = fmt.Sprintf("/worker/attempt_%d/", e.RestartCount)
	}
	cprefix := C.CString(prefix)
	defer C.free(unsafe.Pointer(cprefix))
	serve := e.Rank == 0 && !e.AgentStore
	if err := cerr(C.tx_store_new(host, C.int(e.MasterPort), cbool(serve), C.int(e.WorldSize), ms, cprefix, &g.store)); err != nil {
		if serve {
			return nil, fmt.Errorf("rank 0: serving the rendezvous on %s: %w", addr, err)
		}
		return nil, fmt.Errorf("rank %d: reaching the rendezvous at %s (MASTER_ADDR:MASTER_PORT): %w", e.Rank, addr, err)
	}
	if err := cerr(C.tx_group_new(g.store, C.TxBackend(b), C.int(e.Rank), C.int(e.WorldSize), ms, &g.pg)); err != nil {
		C.tx_store_free(g.store)
		return nil, fmt.Errorf("rank %d: %s process group of %d: %w", e.Rank, b, e.WorldSize, err)
	}
	g.stopBeat, g.beatDone, g.agentStore = make(chan struct{}), make(chan struct{}), e.AgentStore
	go g.heartbeat()
	return g, nil
}

// InitFromEnviron joins the process group of this process's launch (FromEnviron); it fails
// when the process was not launched as one of several.
func InitFromEnviron(b Backend, timeout time.Duration) (*Group, error) {
	e, ok, err := FromEnviron(os.Getenv)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("not launched as one of several processes (no WORLD_SIZE above 1)")
	}
	return Init(e, b, timeout)
}

// Rank is this process's rank; Size the number of ranks.
func (g *Group) Rank() int { return g.rank }
func (g *Group) Size() int { return g.size }

// Close leaves the group (the store last).
func (g *Group) Close() {
	if g == nil || g.pg == nil {
		return
	}
	close(g.stopBeat)
	<-g.beatDone
	C.tx_group_free(g.pg)
	C.tx_store_free(g.store)
	g.pg, g.store = nil, nil
}

// Broadcast overwrites ts on every rank with root's (in place; one coalesced transfer).
func (g *Group) Broadcast(ts []torchx.Tensor, root int) error {
	if len(ts) == 0 {
		return nil
	}
	h := handles(ts)
	return g.wrap("broadcast", cerr(C.tx_group_broadcast(g.pg, &h[0], C.int(len(h)), C.int(root))))
}

// AllReduceSum replaces each tensor by its sum over the ranks (in place).
func (g *Group) AllReduceSum(ts ...torchx.Tensor) error {
	h := handles(ts)
	return g.wrap("all-reduce", cerr(C.tx_group_allreduce_sum(g.pg, &h[0], C.int(len(h)))))
}

// AllReduceMax replaces each tensor by its maximum over the ranks (in place).
func (g *Group) AllReduceMax(ts ...torchx.Tensor) error {
	h := handles(ts)
	return g.wrap("all-reduce", cerr(C.tx_group_allreduce_max(g.pg, &h[0], C.int(len(h)))))
}

// Barrier returns when every rank has reached it.
func (g *Group) Barrier() error { return g.wrap("barrier", cerr(C.tx_group_barrier(g.pg))) }

// BroadcastBytes sends root's b to every rank and returns it there (a length, then the bytes).
func (g *Group) BroadcastBytes(b []byte, root int) ([]byte, error) {
	n := g.on(torchx.FromInt64([]int64{int64(len(b))}, 1))
	if err := g.Broadcast([]torchx.Tensor{n}, root); err != nil {
		return nil, err
	}
	size := torchx.Int64s(n)[0]
	buf := make([]byte, size)
	if g.rank == root {
		copy(buf, b)
	}
	if size == 0 {
		return buf, nil
	}
	t := g.on(torchx.FromUint8(buf, size))
	if err := g.Broadcast([]torchx.Tensor{t}, root); err != nil {
		return nil, err
	}
	return torchx.Uint8s(t), nil
}

// AllGatherBytes returns every rank's b, in rank order, on every rank (one broadcast from
// each rank: for small records, such as which slices each rank annotated).
func (g *Group) AllGatherBytes(b []byte) ([][]byte, error) {
	out := make([][]byte, g.size)
	for r := 0; r < g.size; r++ {
		got, err := g.BroadcastBytes(b, r)
		if err != nil {
			return nil, err
		}
		out[r] = got
	}
	return out, nil
}

// AllReduceScalars sums each value over the ranks (max: the maximum instead).
func (g *Group) AllReduceScalars(max bool, vals ...float64) ([]float64, error) {
	t := g.on(torchx.FromFloat64(vals, int64(len(vals))))
	var err error
	if max {
		err = g.AllReduceMax(t)
	} else {
		err = g.AllReduceSum(t)
	}
	if err != nil {
		return nil, err
	}
	return torchx.Float64s(t), nil
}

// on moves a small host tensor to where the group's collectives take it.
func (g *Group) on(t torchx.Tensor) torchx.Tensor {
	if g.dev == "cpu" {
		return t
	}
	return torchx.To(t, g.dev, -1)
}

// wrap names the rank and the operation in a failed collective's error: a lost rank or a
// timeout shows up here.
func (g *Group) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("rank %d of %d: %s failed (%s stopped, or the %s timed out): %w", g.rank, g.size, op, g.Others(), op, err)
}

// Others names the other ranks for a message about a lost one: the ranks whose heartbeat
// stopped ("rank 2", "ranks 1, 3"), else "rank 1" in a group of two, else "another rank".
func (g *Group) Others() string {
	if lost := g.Lost(); len(lost) > 0 {
		names := make([]string, len(lost))
		for i, r := range lost {
			names[i] = strconv.Itoa(r)
		}
		if len(lost) == 1 {
			return "rank " + names[0]
		}
		return "ranks " + strings.Join(names, ", ")
	}
	if g.size == 2 {
		return "rank " + strconv.Itoa(1-g.rank)
	}
	return "another rank"
}

func beatKey(rank int) string { return "sli2vol-heartbeat/" + strconv.Itoa(rank) }

// heartbeat stamps this rank's key in the store until Close.
func (g *Group) heartbeat() {
	defer close(g.beatDone)
	key := C.CString(beatKey(g.rank))
	defer C.free(unsafe.Pointer(key))
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		v := C.CString(strconv.FormatInt(time.Now().UnixMilli(), 10))
		err := cerr(C.tx_store_set(g.store, key, v))
		C.free(unsafe.Pointer(v))
		if err != nil {
			return // the store is gone (its host stopped): nothing left to stamp
		}
		select {
		case <-g.stopBeat:
			return
		case <-t.C:
		}
	}
}

// Lost lists the other ranks whose heartbeat is older than three beats (or missing after
// the group formed); rank 0 when the store it served no longer answers; nil when nothing is
// known. A stamp is its rank's wall clock: across nodes this assumes clocks agree to well
// under three beats (NTP), and it only ever shapes an error message.
func (g *Group) Lost() []int {
	var lost []int
	buf := make([]byte, 32)
	for r := 0; r < g.size; r++ {
		if r == g.rank {
			continue
		}
		key := C.CString(beatKey(r))
		var found C.int
		err := cerr(C.tx_store_get(g.store, key, 2000, (*C.char)(unsafe.Pointer(&buf[0])), C.int(len(buf)), &found))
		C.free(unsafe.Pointer(key))
		if err != nil {
			if !g.agentStore && g.rank != 0 {
				return []int{0} // rank 0 served the store: it is gone
			}
			return nil
		}
		ms, perr := strconv.ParseInt(C.GoString((*C.char)(unsafe.Pointer(&buf[0]))), 10, 64)
		if found == 0 || perr != nil || time.Since(time.UnixMilli(ms)) > 3*heartbeatEvery {
			lost = append(lost, r)
		}
	}
	return lost
}

func handles(ts []torchx.Tensor) []C.TxTensor {
	h := make([]C.TxTensor, len(ts))
	for i, t := range ts {
		if t.T == nil {
			panic("dist: nil tensor")
		}
		h[i] = C.TxTensor(*t.T)
	}
	return h
}

// cerr turns a shim error string into a Go error.
func cerr(e C.TxErr) error {
	if e == nil {
		return nil
	}
	msg := C.GoString(e)
	C.free(unsafe.Pointer(e))
	return &torchx.Error{Msg: msg}
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// First runs fn on rank 0 while the other ranks wait for it without a collective's timeout
// (a first cache build may take hours): they poll the store every poll and give up only
// when rank 0's heartbeat stops. fn's error is every rank's. Every rank must call First
// the same number of times, in the same order.
func (g *Group) First(fn func() error, poll time.Duration) error {
	g.firsts++
	key := C.CString("sli2vol-first/" + strconv.Itoa(g.firsts))
	defer C.free(unsafe.Pointer(key))
	if g.rank == 0 {
		err := fn()
		msg := "ok"
		if err != nil {
			msg = "error: " + err.Error()
		}
		v := C.CString(msg)
		defer C.free(unsafe.Pointer(v))
		if serr := cerr(C.tx_store_set(g.store, key, v)); serr != nil && err == nil {
			return g.wrap("store", serr)
		}
		return err
	}
	buf := make([]byte, 4096)
	for {
		var found C.int
		if err := cerr(C.tx_store_get(g.store, key, 2000, (*C.char)(unsafe.Pointer(&buf[0])), C.int(len(buf)), &found)); err != nil {
			return g.wrap("waiting for rank 0", err)
		}
		if found != 0 {
			msg := C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
			if msg == "ok" {
				return nil
			}
			return fmt.Errorf("rank 0: %s", strings.TrimPrefix(msg, "error: "))
		}
		if slices.Contains(g.Lost(), 0) {
			return fmt.Errorf("rank 0 stopped while the others waited for it")
		}
		time.Sleep(poll)
	}
}
