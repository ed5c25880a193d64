package torchx

import "testing"

// Two adds and a multiply are two aten::add and one aten::mul; a failing op is reported and
// counting stops, so the next count starts clean.
func TestCountOps(t *testing.T) {
	a := Full([]int64{3}, 2, Float32, "cpu")
	c, err := CountOps(func() { Mul(Add(a, a), Add(a, a)) })
	if err != nil {
		t.Fatal(err)
	}
	if c["aten::add"] != 2 || c["aten::mul"] != 1 {
		t.Fatalf("counts %v: want aten::add 2, aten::mul 1", c)
	}
	if _, err := CountOps(func() { Add(a, Full([]int64{4}, 1, Float32, "cpu")) }); err == nil {
		t.Fatal("a shape error inside the counted work was not reported")
	}
	c, err = CountOps(func() {})
	if err != nil || c["aten::add"] != 0 {
		t.Fatalf("after a failed count: %v %v", c, err)
	}
}
