package main

// The page of `sli2vol serve` in a real browser: headless Chromium (WebGL through SwiftShader)
// driven over the DevTools protocol by chromedp, against the real `sli2vol serve` command with
// a small trained phantom model. The test lives here, not in serve/, because it needs the
// command line: `phantom` and `train` make the model, `serve` is started as the user starts
// it (a subprocess of this test binary, see TestMain) so it loads the run exactly as
// `segment` does, and `segment` gives the reference Dice for the same drawn slice.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
)

// liverID is the phantom's label id for the liver (data.PhantomStructures).
const liverID = 1

// chromiumPath is the first Chromium-like browser on PATH; the test skips without one.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium on PATH (chromium, chromium-browser or google-chrome): `make deps` installs Debian's chromium")
	return ""
}

// Draw the liver on its largest slice with the mouse, propagate, download the mask: its
// liver Dice against the phantom's truth is at least 0.8 of what `sli2vol segment` gets
// from the same drawn slice.
func TestBrowserDrawPropagateDownload(t *testing.T) {
	chrome := chromiumPath(t)
	start := time.Now()
	dir := t.TempDir()
	run, image, truth := browserFixture(t, dir)
	t.Logf("phantoms and a trained model in %v", time.Since(start).Round(time.Second))
	url := startServe(t, run, filepath.Dir(image))
	b := newBrowser(t, chrome, filepath.Join(dir, "chromium"))
	vol := b.open(url, filepath.Base(image))
	if vol.Dims != truth.Shape {
		t.Fatalf("the page opened a %v volume, the phantom is %v", vol.Dims, truth.Shape)
	}
	at := largestSlice(truth, vol.SliceAxis, liverID)
	drawn := b.drawLiver(truth, vol.SliceAxis, at)
	checkDrawing(t, drawn, truth, vol.SliceAxis, at)
	b.propagate(vol.anatomical(at))
	mask := b.download()
	if err := mask.SameGrid(&truth.Geometry, 1e-4); err != nil {
		t.Fatalf("the downloaded mask is not on the volume's grid: %v", err)
	}
	shot := filepath.Join(artifactDir(t), "serve-page.png")
	b.screenshot(shot)
	ref := segmentDrawn(t, run, image, drawn, dir)
	dBrowser, dSegment := infer.Dice(mask.Data, truth.Data, liverID), infer.Dice(ref.Data, truth.Data, liverID)
	t.Logf("liver Dice from slice %d along axis %d: browser %.3f, segment %.3f (%v in all; screenshot %s)",
		at, vol.SliceAxis, dBrowser, dSegment, time.Since(start).Round(time.Second), shot)
	if dSegment <= 0.3 {
		t.Errorf("segment's liver Dice %.3f: the model did not learn to propagate", dSegment)
	}
	if dBrowser < 0.8*dSegment {
		t.Errorf("the browser's mask: liver Dice %.3f, below 0.8 × segment's %.3f", dBrowser, dSegment)
	}
}

// artifactDir is t.ArtifactDir (Go 1.26: kept with go test -artifacts), reached through an
// interface while go.mod says go 1.25; older toolchains get a folder under the OS's temp.
func artifactDir(t *testing.T) string {
	if a, ok := any(t).(interface{ ArtifactDir() string }); ok {
		return a.ArtifactDir()
	}
	dir, err := os.MkdirTemp("", "sli2vol-browser-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserFixture trains a small Sli2Vol model on three phantoms and puts a fourth (another
// seed) alone in a data folder: the run folder, that image, and its truth. cpu-small at
// 48-pixel crops of 48×48×24 phantoms, one epoch (18 steps): about 25 s on two cores, and
// the model propagates the liver well (segment's Dice ≈ 0.7).
func browserFixture(t *testing.T, dir string) (run, image string, truth *data.Labels) {
	p := func(s string) string { return filepath.Join(dir, s) }
	t.Setenv("SLI2VOL_DATA_CROP", "48")
	t.Setenv("SLI2VOL_DATA_RESIZE_RANGE", "48,52")
	steps := [][]string{
		{"phantom", "--out", p("train"), "--cases", "3", "--seed", "1", "--size", "48,48,24"},
		{"phantom", "--out", p("test"), "--cases", "1", "--seed", "5", "--size", "48,48,24"},
		{"train", "--config", "../../configs/cpu-small.yaml", "--mode", "sli2vol", "--data", p("train"), "--out", p("run"), "--epochs", "1"},
	}
	for _, args := range steps {
		if code, out, errOut := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
	}
	image = p("data/phantom_test.nii.gz")
	os.MkdirAll(p("data"), 0o755)
	raw, err := os.ReadFile(p("test/imagesTr/phantom_000.nii.gz"))
	if err == nil {
		err = os.WriteFile(image, raw, 0o644)
	}
	if err == nil {
		truth, err = data.LoadLabels(p("test/labelsTr/phantom_000.nii.gz"), data.DefaultLimits)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p("run"), image, truth
}

// startServe runs `sli2vol serve` on a free loopback port and returns the URL it prints; the
// server is stopped with SIGTERM (killed if it hangs) when the test ends.
func startServe(t *testing.T, run, dataDir string) string {
	p, errOut := cliProcess("serve", "--model", run, "--addr", "127.0.0.1:0", "--data", dataDir)
	stdout, err := p.StdoutPipe()
	if err == nil {
		err = p.Start()
	}
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		p.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			p.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("serve's stderr:\n%s", errOut)
		}
	})
	first, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { p.Wait(); close(exited) }() // Wait after the read: it closes the pipe
	if err != nil {
		t.Fatalf("serve printed no URL (%v)", err)
	}
	return strings.Fields(strings.TrimPrefix(first, "sli2vol serve: "))[0]
}

// browser is one headless Chromium tab and what its page wrote to the console.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []string
}

// newBrowser starts headless Chromium with a fresh profile in profile. WebGL 2 (NiiVue needs
// it) runs on SwiftShader, ANGLE's CPU renderer: there is no GPU in a headless CI machine,
// and --disable-gpu would leave the page without WebGL. --no-sandbox because CI runs as
// root; the networking flags keep the browser from calling out.
func newBrowser(t *testing.T, chrome, profile string) *browser {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome), chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 800),
		chromedp.Headless, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("use-gl", "angle"), chromedp.Flag("use-angle", "swiftshader"),
		chromedp.Flag("enable-unsafe-swiftshader", true), chromedp.Flag("ignore-gpu-blocklist", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(func() { cancel(); cancelAlloc() }) // closes the tab, then the browser
	messages := chromedp.Console(ctx)
	// The page at 1,280×800 CSS pixels (the window size leaves less to headless's viewport).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", chrome, err)
	}
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, fmt.Sprintf("%s: %s", m.Type, m.Text))
			b.mu.Unlock()
		}
	}()
	// Registered after the browser's cleanup, so it runs first, while the page is still there.
	t.Cleanup(b.logOnFailure)
	return b
}

// logOnFailure logs the page's console and its status line when the test failed.
func (b *browser) logOnFailure() {
	if !b.t.Failed() {
		return
	}
	b.mu.Lock()
	b.t.Logf("page console:\n%s", strings.Join(b.console, "\n"))
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	status, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`document.body.dataset.state + ': ' + document.getElementById('status').textContent`))
	b.t.Logf("page state and #status: %s (%v)", status, err)
}

// do runs actions, failing the test on an error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page (awaiting a promise) into a T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitState waits until the page's state is want, failing at once on "error".
func (b *browser) waitState(want string, timeout time.Duration) {
	b.t.Helper()
	expr := fmt.Sprintf(`['%s', 'error'].includes(document.body.dataset.state) && document.body.dataset.state`, want)
	got, err := chromedp.Run(b.ctx, chromedp.Poll[string](expr, chromedp.WithPollingTimeout(timeout)))
	if err != nil || got != want {
		b.t.Fatalf("waiting for the page to be %s: state %q, %v", want, got, err)
	}
}

// pageVolume is the part of the server's answer for the opened volume that the test uses.
type pageVolume struct {
	Dims      [3]int `json:"dims"`
	SliceAxis int    `json:"slice_axis"`
	Slices    int    `json:"slices"`
	Reversed  bool   `json:"reversed"`
}

// anatomical is the anatomical slice number (what the API reports) of array index at.
func (v pageVolume) anatomical(at int) int {
	if v.Reversed {
		return v.Slices - 1 - at
	}
	return at
}

// open loads the page, clicks the volume in the list and Open, as a user would, and waits
// until the volume is shown.
func (b *browser) open(url, name string) pageVolume {
	b.t.Helper()
	b.do("loading the page", chromedp.Navigate(url))
	option := fmt.Sprintf(`#volume-list option[value=%q]`, name)
	ready := fmt.Sprintf(`document.body.dataset.state === 'error' ? 'error' :
		!!(window.sli2vol && window.sli2vol.state.session && document.querySelector(%q)) && 'listed'`, option)
	got, err := chromedp.Run(b.ctx, chromedp.Poll[string](ready, chromedp.WithPollingTimeout(time.Minute)))
	if err != nil || got != "listed" {
		b.t.Fatalf("the page did not list %s with a session: %q, %v", name, got, err)
	}
	b.do("opening "+name, chromedp.Click(chromedp.CSS(option)), chromedp.Click(chromedp.ID("open")))
	b.waitState("ready", time.Minute)
	return eval[pageVolume](b, `window.sli2vol.state.volume`)
}

// largestSlice is the array index along axis of the slice with the most voxels of id.
func largestSlice(l *data.Labels, axis int, id int32) int {
	count := make([]int, l.Shape[axis])
	for q, v := range l.Data {
		if v == id {
			count[voxelOf(l.Shape, q)[axis]]++
		}
	}
	best := 0
	for n, c := range count {
		if c > count[best] {
			best = n
		}
	}
	return best
}

// voxelOf is the (i, j, k) of flat index q (i fastest, as NIfTI stores voxels).
func voxelOf(shape [3]int, q int) [3]int {
	return [3]int{q % shape[0], q / shape[0] % shape[1], q / (shape[0] * shape[1])}
}

func flat(shape [3]int, v [3]int) int { return v[0] + shape[0]*(v[1]+shape[1]*v[2]) }

// liverRuns are the truth's liver voxels on slice at as runs along the first in-plane axis:
// the start and end voxel of each, in the file's own voxel indices.
func liverRuns(truth *data.Labels, axis, at int) [][2][3]int {
	a0, a1 := (axis+1)%3, (axis+2)%3
	if a0 > a1 {
		a0, a1 = a1, a0
	}
	var runs [][2][3]int
	n := truth.Shape[a0]
	for u := 0; u < truth.Shape[a1]; u++ {
		var v [3]int
		v[axis], v[a1] = at, u
		start := -1
		for s := 0; s <= n; s++ {
			in := false
			if s < n {
				v[a0] = s
				in = truth.Data[flat(truth.Shape, v)] == liverID
			}
			if in && start < 0 {
				start = s
			} else if !in && start >= 0 {
				first, last := v, v
				first[a0], last[a0] = start, s-1
				runs = append(runs, [2][3]int{first, last})
				start = -1
			}
		}
	}
	return runs
}

// drawLiver draws the truth's liver on slice at with trusted mouse events on the canvas: the
// pen (key D) at one voxel (key − from the default 3), one stroke per run of liver voxels
// along a row, from its first voxel's centre to its last's and back. (NiiVue 0.69's pen
// draws the line from the previous point up to, not including, the point moved to — a hand's
// next movement fills it in — so a stroke that ends where it stopped would miss a voxel.)
// It returns the drawing the page would send (its NIfTI export).
func (b *browser) drawLiver(truth *data.Labels, axis, at int) *data.Labels {
	b.t.Helper()
	b.do("choosing the pen", chromedp.KeyEvent("d"), chromedp.KeyEvent("-"))
	pen := eval[[]any](b, `[window.sli2vol.state.tool, window.sli2vol.state.brush, window.sli2vol.nv.opts.drawingEnabled]`)
	if fmt.Sprint(pen) != "[pen 1 true]" {
		b.t.Fatalf("keys D and − gave tool, brush, drawing enabled = %v; want pen, 1, true", pen)
	}
	runs := liverRuns(truth, axis, at)
	mid := runs[len(runs)/2] // the crosshair in the liver's middle row, at its middle
	var centre [3]int
	for a := range centre {
		centre[a] = (mid[0][a] + mid[1][a]) / 2
	}
	eval[any](b, fmt.Sprintf(`window.sli2vol.goToVoxel(%s)`, jsonOf(centre)))
	var ends [][3]int
	for _, r := range runs {
		ends = append(ends, r[0], r[1])
	}
	type point struct{ X, Y float64 }
	pts := eval[[]*point](b, fmt.Sprintf(`%s.map(v => window.sli2vol.voxelToClient(v))`, jsonOf(ends)))
	var strokes []chromedp.Action[chromedp.Void]
	for i := 0; i < len(pts); i += 2 {
		p, q := pts[i], pts[i+1]
		if p == nil || q == nil {
			b.t.Fatalf("voxel %v or %v is not on the screen", ends[i], ends[i+1])
		}
		strokes = append(strokes, chromedp.MouseEvent(chromedp.MouseMoved, p.X, p.Y),
			chromedp.MouseEvent(chromedp.MousePressed, p.X, p.Y, leftButton(1), chromedp.ClickCount(1)),
			chromedp.MouseEvent(chromedp.MouseMoved, q.X, q.Y, leftButton(1)),
			chromedp.MouseEvent(chromedp.MouseMoved, p.X, p.Y, leftButton(1)),
			chromedp.MouseEvent(chromedp.MouseReleased, p.X, p.Y, leftButton(0), chromedp.ClickCount(1)))
	}
	b.do("drawing", strokes...)
	b.t.Logf("drew %d strokes on slice %d along axis %d", len(runs), at, axis)
	return readLabels(b.t, "the drawing", eval[string](b, `window.sli2vol.exportDrawing().then(`+jsBase64+`)`))
}

// leftButton sets the left button and the mask of pressed buttons (1: left held).
func leftButton(held int64) chromedp.MouseOption {
	return func(p *input.DispatchMouseEventParams) { p.Button, p.Buttons = input.MouseButtonLeft, held }
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// readLabels decodes a base64 NIfTI label volume (gzipped or not).
func readLabels(t *testing.T, what, b64 string) *data.Labels {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	l, err := data.ReadLabels(what, bytes.NewReader(raw), data.DefaultLimits)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return l
}

// checkDrawing: the drawing is on the volume's grid, all on slice at, label 1, and is exactly
// the truth's liver there (each stroke landed on the voxels aimed at).
func checkDrawing(t *testing.T, drawn, truth *data.Labels, axis, at int) {
	t.Helper()
	if err := drawn.SameGrid(&truth.Geometry, 1e-4); err != nil {
		t.Fatalf("the drawing is not on the volume's grid: %v", err)
	}
	var both, nDrawn, nTruth int
	for q, v := range drawn.Data {
		onSlice := voxelOf(truth.Shape, q)[axis] == at
		if v != 0 && (!onSlice || v != liverID) {
			t.Fatalf("drawn voxel %v has label %d (want only %d on slice %d)", voxelOf(truth.Shape, q), v, liverID, at)
		}
		isLiver := onSlice && truth.Data[q] == liverID
		if v != 0 {
			nDrawn++
		}
		if isLiver {
			nTruth++
		}
		if v != 0 && isLiver {
			both++
		}
	}
	t.Logf("drawn %d voxels, the liver has %d on slice %d", nDrawn, nTruth, at)
	if both != nTruth || nDrawn != nTruth {
		t.Fatalf("the strokes missed: %d drawn, %d of the liver's %d on slice %d", nDrawn, both, nTruth, at)
	}
}

// jsBase64 is a page function: a Uint8Array as base64 (in chunks: apply's argument limit).
const jsBase64 = `(b => {
	let s = ''
	for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000))
	return btoa(s)
})`

// propagate clicks Propagate and waits for the job to finish: the progress bar full, the job
// annotated on slice want (anatomical) only.
func (b *browser) propagate(want int) {
	b.t.Helper()
	b.do("pressing Propagate", chromedp.Click(chromedp.ID("propagate")))
	b.waitState("done", 2*time.Minute)
	prog := eval[[2]float64](b, `[document.getElementById('progress').value, document.getElementById('progress').max]`)
	if prog[0] != prog[1] || prog[1] <= 0 {
		b.t.Errorf("progress bar at %v / %v after the job", prog[0], prog[1])
	}
	got := eval[[]int](b, `window.sli2vol.state.job.annotated_slices`)
	if len(got) != 1 || got[0] != want {
		b.t.Fatalf("the job was annotated on slices %v, want [%d]", got, want)
	}
}

// download fetches the file the page's Download link offers, from inside the page (with the
// page's own URL, token and cookies), and checks the name it offers.
func (b *browser) download() *data.Labels {
	b.t.Helper()
	type file struct{ Name, Data string }
	f := eval[file](b, `(async () => {
		const a = document.getElementById('download')
		if (!a.href) throw new Error('Download has no link')
		const r = await fetch(a.href)
		if (!r.ok) throw new Error('Download: ' + r.status + ' ' + await r.text())
		return { Name: a.download, Data: `+jsBase64+`(new Uint8Array(await r.arrayBuffer())) }
	})()`)
	if f.Name != "phantom_test_mask.nii.gz" {
		b.t.Errorf("Download offers the name %q, want phantom_test_mask.nii.gz", f.Name)
	}
	return readLabels(b.t, "the downloaded mask", f.Data)
}

// screenshot switches to the 4-up layout (the mask over three planes and the 3D render),
// waits for two frames and writes the page as PNG.
func (b *browser) screenshot(path string) {
	b.t.Helper()
	b.do("choosing the 4-up layout", chromedp.Click(chromedp.CSS(`#layout button[data-layout="multi"]`)))
	eval[bool](b, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`)
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err == nil {
		err = os.WriteFile(path, png, 0o644)
	}
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
}

// segmentDrawn runs `sli2vol segment` with the drawing the page sent as the annotation.
func segmentDrawn(t *testing.T, run, image string, drawn *data.Labels, dir string) *data.Labels {
	t.Helper()
	ann, out := filepath.Join(dir, "drawn.nii.gz"), filepath.Join(dir, "segment.nii.gz")
	if err := data.WriteLabels(ann, drawn.Data, &drawn.Geometry, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, o, e := runCLI(t, "segment", "--model", run, "--image", image, "--annotation", ann, "--out", out); code != 0 {
		t.Fatalf("segment: exit %d\n%s\n%s", code, o, e)
	}
	l, err := data.LoadLabels(out, data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
