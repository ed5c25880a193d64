package infer

import (
	"context"
	"slices"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
)

// recordingAdapter stands in for train.Adapter: it records what each adaptation was given
// (the pseudo-labels of the volume, slice by slice) and returns the next network of its list.
type recordingAdapter struct {
	nets  []Network
	calls []adaptCall
}

type adaptCall struct {
	net   Network
	hasPL bool
	pl    []int32 // the volume's labels in slice order
	steps int
}

func (a *recordingAdapter) Adapt(_ context.Context, t AdaptTask) (Network, error) {
	call := adaptCall{net: t.Net, hasPL: t.Volume.HasPL, steps: t.Cfg.Infer.AdaptSteps}
	if t.Volume.HasPL {
		buf := make([]int32, t.Volume.H*t.Volume.W)
		for n := 0; n < t.Volume.Len; n++ {
			if err := t.Volume.Slices.Labels(n, buf); err != nil {
				return nil, err
			}
			call.pl = append(call.pl, buf...)
		}
	}
	for i := 1; i <= call.steps && t.Progress != nil; i++ {
		t.Progress(i, call.steps)
	}
	a.calls = append(a.calls, call)
	return a.nets[len(a.calls)-1], nil
}

// adaptJob is a job over a stand-in flow on a small ramp volume annotated on slice 2.
func adaptJob(t *testing.T, mode configs.Mode, steps, rounds int, a Adapter) (*Job, *Prepared, Request, data.Slicer) {
	c := configs.Defaults()
	c.Model.Mode = mode
	c.Infer.ObjectEstimate = configs.EstimatePropagated
	c.Infer.AdaptSteps, c.Infer.AdaptRounds = steps, rounds
	j := &Job{Cfg: c, Net: fixedFlow{0, 0}, Device: "cpu", Adapter: a}
	img := lia()
	for i := range img.Data {
		img.Data[i] = float32(i % 17)
	}
	p, err := j.Prepare(img)
	if err != nil {
		t.Fatal(err)
	}
	h, w := p.Slicer.Size()
	mask := make([]int32, h*w)
	mask[2*w+3], mask[2*w+4], mask[3*w+3], mask[3*w+4] = 5, 5, 5, 5
	return j, p, Request{Annotations: []*data.Annotation{{Slice: 2, Mask: mask, IDs: []int32{5}}}}, p.Slicer
}

func propagateWith(t *testing.T, j *Job, net Network, p *Prepared, r Request) []int32 {
	res, err := j.propagatorFor(net).Run(p.Image, p.Slicer, p.Window, r)
	if err != nil {
		t.Fatal(err)
	}
	return res.Labels
}

// Sli2Vol+: each round adapts on the previous network's propagation as the pseudo-labels
// (slice order), the final propagation uses the last adapted network, progress runs over
// every part to one total, and adapt_steps 0 never adapts.
func TestAdaptedRunRounds(t *testing.T) {
	second, third := fixedFlow{0, 1}, fixedFlow{1, 0}
	a := &recordingAdapter{nets: []Network{second, third}}
	j, p, r, s := adaptJob(t, configs.ModeSli2VolPlus, 3, 2, a)
	var seen [][2]int
	r.Progress = func(done, total int) { seen = append(seen, [2]int{done, total}) }
	res, err := j.Run(p, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.calls) != 2 {
		t.Fatalf("%d adaptations, want 2 rounds", len(a.calls))
	}
	plain := Request{Annotations: r.Annotations}
	for i, want := range []Network{j.Net, second} {
		c := a.calls[i]
		if c.net != want || !c.hasPL {
			t.Fatalf("round %d adapted %v (pseudo-labels %v), want %v with pseudo-labels", i+1, c.net, c.hasPL, want)
		}
		// The volume's labels in slice order are that network's propagation.
		prop := propagateWith(t, j, want, p, plain)
		var bySlice []int32
		for n := 0; n < s.Len(); n++ {
			bySlice = append(bySlice, data.Slice(s, prop, n)...)
		}
		if !slices.Equal(c.pl, bySlice) {
			t.Fatalf("round %d adapted on other pseudo-labels than %v's propagation", i+1, want)
		}
	}
	if want := propagateWith(t, j, third, p, plain); !slices.Equal(res.Labels, want) {
		t.Fatal("the final propagation is not the last adapted network's")
	}
	// Three passes of every slice but the annotated one (two to make pseudo-labels, the
	// final one) and two rounds of 3 steps.
	total := 3*(s.Len()-1) + 2*3
	for i, pr := range seen {
		if pr[1] != total || (i > 0 && pr[0] < seen[i-1][0]) {
			t.Fatalf("progress %v at %d: want a rising count to %d", pr, i, total)
		}
	}
	if last := seen[len(seen)-1]; last[0] != total {
		t.Fatalf("progress ended at %v, want %d", last, total)
	}
}

// Sli2Vol has no pseudo-label input, and Sli2Vol+ with estimate none propagates without one:
// one adaptation on the image alone, whatever the rounds.
func TestAdaptedRunSli2Vol(t *testing.T) {
	for _, mode := range configs.Modes {
		a := &recordingAdapter{nets: []Network{fixedFlow{0, 1}}}
		j, p, r, _ := adaptJob(t, mode, 2, 3, a)
		j.Cfg.Infer.ObjectEstimate = configs.EstimateNone
		res, err := j.Run(p, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.calls) != 1 || a.calls[0].hasPL {
			t.Fatalf("%s: adaptations %+v, want one without pseudo-labels", mode, a.calls)
		}
		if want := propagateWith(t, j, fixedFlow{0, 1}, p, r); !slices.Equal(res.Labels, want) {
			t.Fatalf("%s: the propagation is not the adapted network's", mode)
		}
	}
}

// adapt_steps 0 is the paper: no adaptation, the job's own network; adapt_steps > 0 without
// an adapter is refused.
func TestNoAdaptation(t *testing.T) {
	a := &recordingAdapter{nets: []Network{fixedFlow{0, 1}}}
	j, p, r, _ := adaptJob(t, configs.ModeSli2VolPlus, 0, 1, a)
	res, err := j.Run(p, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.calls) != 0 {
		t.Fatal("adapt_steps 0 adapted")
	}
	if want := propagateWith(t, j, j.Net, p, r); !slices.Equal(res.Labels, want) {
		t.Fatal("adapt_steps 0 changed the propagation")
	}
	j.Cfg.Infer.AdaptSteps, j.Adapter = 2, nil
	if _, err := j.Run(p, r); err == nil {
		t.Fatal("adaptation without an adapter was not refused")
	}
}

// adapt_norm volume alone (no steps) adapts: the adapter is called once, with 0 steps, and the
// propagation is the adapted network's.
func TestAdaptNormOnly(t *testing.T) {
	a := &recordingAdapter{nets: []Network{fixedFlow{0, 1}}}
	j, p, r, _ := adaptJob(t, configs.ModeSli2Vol, 0, 1, a)
	j.Cfg.Infer.AdaptNorm = configs.AdaptNormVolume
	res, err := j.Run(p, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.calls) != 1 || a.calls[0].steps != 0 {
		t.Fatalf("adaptations %+v, want one of 0 steps", a.calls)
	}
	if want := propagateWith(t, j, fixedFlow{0, 1}, p, r); !slices.Equal(res.Labels, want) {
		t.Fatal("the propagation is not the adapted network's")
	}
}

// With KeepAdapted, an adaptation that does not depend on the request (Sli2Vol: the image
// alone) is made once for a volume's requests, until Release; one that does (Sli2Vol+ on
// its own propagation) is made for each request.
func TestKeptAdaptation(t *testing.T) {
	a := &recordingAdapter{nets: []Network{fixedFlow{0, 1}, fixedFlow{1, 0}}}
	j, p, r, _ := adaptJob(t, configs.ModeSli2Vol, 2, 1, a)
	p.KeepAdapted = true
	first, err := j.Run(p, r)
	if err != nil {
		t.Fatal(err)
	}
	second, err := j.Run(p, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.calls) != 1 || !slices.Equal(first.Labels, second.Labels) {
		t.Fatalf("%d adaptations for two requests on a kept volume, want 1 and the same result", len(a.calls))
	}
	j.Release(p)
	third, err := j.Run(p, r)
	if err != nil {
		t.Fatal(err)
	}
	if want := propagateWith(t, j, fixedFlow{1, 0}, p, r); len(a.calls) != 2 || !slices.Equal(third.Labels, want) {
		t.Fatalf("after Release: %d adaptations, want a new one used", len(a.calls))
	}

	b := &recordingAdapter{nets: []Network{fixedFlow{0, 1}, fixedFlow{1, 0}}}
	j, p, r, _ = adaptJob(t, configs.ModeSli2VolPlus, 2, 1, b)
	p.KeepAdapted = true
	for i := 0; i < 2; i++ {
		if _, err := j.Run(p, r); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.calls) != 2 {
		t.Fatalf("sli2vol+ adapting on its own propagation: %d adaptations for two requests, want 2", len(b.calls))
	}
}
