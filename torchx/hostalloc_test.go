package torchx

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// allocChildEnv makes the test binary, run again by TestHostAllocPolicy, report what the
// allocator keeps after a 30 MiB tensor is freed, in a process with no allocation history
// (glibc's defaults move with the process's past frees).
const allocChildEnv = "TORCHX_ALLOC_CHILD"

func TestHostAllocChild(t *testing.T) {
	if os.Getenv(allocChildEnv) == "" {
		t.Skip("run by TestHostAllocPolicy")
	}
	TidyDo(func() { Zeros([]int64{30 << 18}, Float32, "cpu") }) // 30 MiB, freed at once
	fmt.Printf("applied=%v free=%d\n", HostAllocPolicyApplied(), hostFreeBytes())
}

// With the policy, a freed 30 MiB tensor stays in the heap for the next step (below the
// 32 MiB mmap threshold, and far below the 1 GiB trim threshold). Where the user set one of
// glibc's variables, the policy stands aside, and the same tensor is mapped and unmapped.
func TestHostAllocPolicy(t *testing.T) {
	if hostFreeBytes() < 0 {
		t.Skip("not glibc")
	}
	child := func(env ...string) (applied bool, free int64) {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestHostAllocChild$", "-test.v")
		cmd.Env = append(append(os.Environ(), allocChildEnv+"=1"), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if rest, ok := strings.CutPrefix(l, "applied="); ok {
				a, f, _ := strings.Cut(rest, " free=")
				n, _ := strconv.ParseInt(f, 10, 64)
				return a == "true", n
			}
		}
		t.Fatalf("child printed no result:\n%s", out)
		return
	}
	if applied, free := child(); !applied || free < 30<<20 {
		t.Fatalf("policy applied %v, %d MiB held free after a 30 MiB tensor went, want applied and ≥ 30", applied, free>>20)
	}
	if applied, free := child("MALLOC_TRIM_THRESHOLD_=131072"); applied || free >= 30<<20 {
		t.Fatalf("with MALLOC_TRIM_THRESHOLD_ set: policy applied %v, %d MiB held free; want not applied and < 30", applied, free>>20)
	}
}
