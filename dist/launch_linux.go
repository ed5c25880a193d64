package dist

import "syscall"

// workerAttr: workers get the terminal's signals only through the launcher (their own
// process group), so one Ctrl-C reaches each exactly once; and a launcher that dies takes its
// workers along (SIGTERM: they checkpoint and stop).
func workerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
