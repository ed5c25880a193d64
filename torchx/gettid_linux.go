package torchx

import "syscall"

// threadID is the calling OS thread's id (scopes belong to a thread; see scope.go).
func threadID() int { return syscall.Gettid() }
