package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/torchx"
)

const gotorchModule = "github.com/wangkuiyi/gotorch"

func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				if d.Replace != nil {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return "unknown"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print sli2vol, Go, libtorch and gotorch versions and the devices libtorch sees",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "sli2vol %s\n", version)
			fmt.Fprintf(w, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			fmt.Fprintf(w, "libtorch %s (%d threads)\n", torchx.LibtorchVersion(), torchx.NumThreads())
			fmt.Fprintf(w, "gotorch %s\n", moduleVersion(gotorchModule))
			if torchx.HostAllocPolicyApplied() {
				fmt.Fprintf(w, "host allocator: freed heap kept up to %d MiB, mmap from %d MiB (glibc's MALLOC_*_ variables override)\n",
					torchx.HostTrimThreshold>>20, torchx.HostMmapThreshold>>20)
			} else {
				fmt.Fprintln(w, "host allocator: the C library's settings")
			}
			if torchx.CUDAAvailable() {
				cudnn := "no"
				if torchx.CUDNNAvailable() {
					cudnn = "yes"
				}
				fmt.Fprintf(w, "cuda available: yes (%d GPU(s), cuDNN %s)\n", torchx.CUDADeviceCount(), cudnn)
				for i := 0; i < torchx.CUDADeviceCount(); i++ {
					if name, err := torchx.CUDADeviceName(i); err == nil {
						fmt.Fprintf(w, "gpu %d: %s\n", i, name)
					}
				}
			} else {
				fmt.Fprintln(w, "cuda available: no")
			}
			return nil
		},
	}
}
