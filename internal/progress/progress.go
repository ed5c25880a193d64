// Package progress reports long work: a progress bar (progressbar/v3) when the output is a
// terminal, plain log lines otherwise (CI logs, files, pipes), at most one per interval.
package progress

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Reporter counts steps towards a total and shows a status string with them.
type Reporter struct {
	desc  string
	total int
	done  int
	bar   *progressbar.ProgressBar
	w     io.Writer
	every time.Duration
	last  time.Time
	start time.Time
	now   func() time.Time
}

// New reports to w: a bar on a terminal, else a line every interval (and at the end).
// A nil w discards everything.
func New(w io.Writer, total int, desc string, interval time.Duration) *Reporter {
	if w == nil {
		w = io.Discard
	}
	r := &Reporter{desc: desc, total: total, w: w, every: interval, now: time.Now}
	r.start = r.now()
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		r.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	return r
}

// Add advances by n steps; status (e.g. "loss 0.0123, 41 samples/s") is shown with them.
func (r *Reporter) Add(n int, status string) {
	r.done += n
	if r.bar != nil {
		r.bar.Describe(r.desc + " " + status)
		r.bar.Add(n)
		return
	}
	now := r.now()
	if r.done >= r.total || now.Sub(r.last) >= r.every {
		r.last = now
		fmt.Fprintf(r.w, "%s %d/%d %s (%s)\n", r.desc, r.done, r.total, status, now.Sub(r.start).Round(time.Second))
	}
}

// Finish closes the bar (a no-op for plain lines).
func (r *Reporter) Finish() {
	if r.bar != nil {
		r.bar.Finish()
		fmt.Fprintln(r.w)
	}
}
