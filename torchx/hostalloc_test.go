package torchx

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// 200 MiB of 10 MiB tensors freed together at a scope's end stay with the allocator (below
// the 1 GiB trim threshold) for the next step to reuse; a thread's own arena may still drop
// a 64 MiB heap that emptied (measured: 180 of 200 MiB kept). Under glibc's defaults they
// would be mapped one by one (threshold under 10 MiB) and unmapped when freed, or come from
// the heap and be trimmed to twice the threshold, at most 64 MiB: under 150 MiB either way.
func TestHostAllocPolicy(t *testing.T) {
	if !HostAllocPolicyApplied() {
		t.Skip("host allocator policy not applied (not glibc, or glibc's malloc variables are set)")
	}
	TidyDo(func() {
		for i := 0; i < 20; i++ {
			Zeros([]int64{10 << 18}, Float32, "cpu") // 10 MiB
		}
	})
	// Free bytes, not their growth: the tensors may reuse space that was free before.
	if free := hostFreeBytes(); free < 150<<20 {
		t.Fatalf("the allocator holds %d MiB free after 200 MiB were freed, want ≥ 150", free>>20)
	}
}

// Where the user set one of glibc's malloc variables, their setting stands.
func TestHostAllocPolicyUserSetting(t *testing.T) {
	if os.Getenv("TORCHX_POLICY_CHILD") != "" {
		if HostAllocPolicyApplied() {
			t.Fatal("policy applied although MALLOC_TRIM_THRESHOLD_ was set")
		}
		return
	}
	if hostFreeBytes() < 0 {
		t.Skip("not glibc")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHostAllocPolicyUserSetting$", "-test.v")
	cmd.Env = append(os.Environ(), "TORCHX_POLICY_CHILD=1", "MALLOC_TRIM_THRESHOLD_=131072")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
