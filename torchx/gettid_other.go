//go:build !linux

package torchx

import "runtime"

// threadID stands for the calling OS thread where there is no gettid: it is the calling
// goroutine's id, read from the header of its stack trace ("goroutine 18 [running]:").
// Scopes need no more, because a scope's goroutine is locked to its thread while the scope
// is open: no other goroutine runs on that thread meanwhile, and the goroutine runs on no
// other. It costs about a microsecond a call, which Linux's gettid does not.
func threadID() int {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	id := 0
	for i := len("goroutine "); i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		id = id*10 + int(b[i]-'0')
	}
	return id
}
