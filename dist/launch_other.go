//go:build !linux

package dist

import "syscall"

// workerAttr: workers get the terminal's signals only through the launcher.
func workerAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
