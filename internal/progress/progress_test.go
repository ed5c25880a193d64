package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Off a terminal, lines come at most once per interval, and always for the last step.
func TestPlainLinesThrottled(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, 10, "train", 10*time.Second)
	clock := time.Unix(0, 0)
	r.now = func() time.Time { return clock }
	r.start, r.last = clock, clock
	for i := 1; i <= 10; i++ {
		clock = clock.Add(3 * time.Second) // a line at 12 s, 24 s, and the last at 30 s
		r.Add(1, "loss 0.5")
	}
	r.Finish()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), buf.String())
	}
	if lines[0] != "train 4/10 loss 0.5 (12s)" || lines[2] != "train 10/10 loss 0.5 (30s)" {
		t.Fatalf("lines %q", lines)
	}
}
