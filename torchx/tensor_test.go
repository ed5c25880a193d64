package torchx

import (
	"errors"
	"strings"
	"testing"
)

func TestRoundTripData(t *testing.T) {
	f := []float32{1, -2.5, 3, 4, 5, 6}
	x := FromFloat32(f, 2, 3)
	assertShape(t, "x", x, 2, 3)
	if DTypeOf(x) != Float32 {
		t.Fatalf("dtype %v", DTypeOf(x))
	}
	got := Float32s(x)
	for i := range f {
		if got[i] != f[i] {
			t.Fatalf("got %v want %v", got, f)
		}
	}
	// The tensor owns a copy: changing the Go slice afterwards must not change it.
	f[0] = 100
	if Float32s(x)[0] != 1 {
		t.Fatal("tensor aliases the Go slice")
	}
	ids := []int64{12175, -3, 0, 1 << 40}
	if got := Int64s(FromInt64(ids, 4)); got[0] != 12175 || got[3] != 1<<40 {
		t.Fatalf("int64 round trip %v", got)
	}
	// Conversion on the way out: int64 tensor read as float32.
	if got := Float32s(FromInt64([]int64{7, 8}, 2)); got[0] != 7 || got[1] != 8 {
		t.Fatalf("int64→float32 %v", got)
	}
	if n := Numel(FromFloat32(nil, 0, 3)); n != 0 {
		t.Fatalf("empty tensor numel %d", n)
	}
}

func TestWrongSizeIsAnError(t *testing.T) {
	err := Try(func() { FromFloat32([]float32{1, 2, 3}, 2, 2) })
	var te *Error
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "do not fill shape") {
		t.Fatalf("err = %v", err)
	}
}

// A libtorch shape error reaches Go as an error carrying libtorch's own message.
func TestCppErrorBecomesGoError(t *testing.T) {
	x := Zeros([]int64{1, 3, 8, 8}, Float32, "cpu")
	w := Zeros([]int64{4, 5, 3, 3}, Float32, "cpu") // expects 5 input channels
	err := Try(func() { Conv2d(x, w, Tensor{}, ConvOpts{}) })
	if err == nil {
		t.Fatal("mismatched conv did not fail")
	}
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("error of type %T", err)
	}
	// libtorch: "Given groups=1, weight of size [4, 5, 3, 3], expected input[1, 3, 8, 8] to
	// have 5 channels, but got 3 channels instead"
	for _, s := range []string{"expected input", "5 channels", "3 channels"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "frame #") {
		t.Errorf("message carries a C++ backtrace: %q", err)
	}
	// gotorch reports its C++ errors as string panics; Try converts them as well.
	err = Try(func() { panic("from gotorch") })
	if !errors.As(err, &te) {
		t.Fatalf("string panic not converted: %v", err)
	}
}

func TestFreeMakesLaterUseAnError(t *testing.T) {
	x := FromFloat32([]float32{1}, 1)
	Free(x)
	Free(x) // twice is harmless
	if err := Try(func() { Exp(x) }); err == nil || !strings.Contains(err.Error(), "nil tensor handle") {
		t.Fatalf("use after Free: %v", err)
	}
}

func TestDeviceMoves(t *testing.T) {
	x := FromFloat32([]float32{1.5, 2.25}, 2)
	y := To(x, "cpu", Float64)
	if DTypeOf(y) != Float64 || DeviceOf(y) != "cpu" {
		t.Fatalf("dtype %v device %s", DTypeOf(y), DeviceOf(y))
	}
	assertClose(t, "moved", Float64s(y), []float64{1.5, 2.25}, 0)
	if !CUDAAvailable() {
		err := Try(func() { To(x, "cuda", -1) })
		if err == nil {
			t.Fatal("moving to cuda on a CPU-only build succeeded")
		}
	} else {
		z := To(To(x, "cuda", -1), "cpu", -1)
		assertClose(t, "cuda round trip", Float64s(z), []float64{1.5, 2.25}, 0)
	}
}

// Data put straight on a device is a copy taken before the call returns, on every device this
// machine has; a device that does not exist is an error naming it, not an abort.
func TestFromDataOn(t *testing.T) {
	devices := []string{"", "cpu"}
	if CUDAAvailable() {
		devices = append(devices, "cuda")
	}
	for _, dev := range devices {
		f := []float32{1, -2.5, 3, 4, 5, 6}
		x := FromFloat32On(f, dev, 3, 2)
		ids := []int64{7, -1 << 40}
		y := FromInt64On(ids, dev, 2)
		f[0], ids[0] = 100, 100 // reused at once, as a sampler reuses its buffers
		want := "cpu"
		if dev == "cuda" {
			want = "cuda:0"
		}
		if DeviceOf(x) != want || DeviceOf(y) != want {
			t.Errorf("%q: on %s and %s", dev, DeviceOf(x), DeviceOf(y))
		}
		assertShape(t, "x", x, 3, 2)
		assertClose(t, dev+" float32", Float64s(x), []float64{1, -2.5, 3, 4, 5, 6}, 0)
		if got := Int64s(y); got[0] != 7 || got[1] != -1<<40 {
			t.Errorf("%q: int64 %v", dev, got)
		}
		if n := Numel(FromFloat32On(nil, dev, 0, 3)); n != 0 {
			t.Errorf("%q: empty tensor has %d elements", dev, n)
		}
	}
	if err := Try(func() { FromFloat32On([]float32{1}, "nodevice", 1) }); err == nil || !strings.Contains(err.Error(), "nodevice") {
		t.Errorf("unknown device: %v", err)
	}
	if err := Try(func() { FromFloat32On([]float32{1, 2}, "cpu", 3) }); err == nil || !strings.Contains(err.Error(), "do not fill shape") {
		t.Errorf("wrong size: %v", err)
	}
}

func TestNoGradAndSeed(t *testing.T) {
	x := FromFloat32([]float32{1, 2}, 2)
	SetRequiresGrad(x, true)
	if !RequiresGrad(MulScalar(x, 2)) {
		t.Fatal("op on a parameter does not require grad")
	}
	NoGrad(func() {
		if GradEnabled() {
			t.Fatal("grad enabled inside NoGrad")
		}
		if RequiresGrad(MulScalar(x, 2)) {
			t.Fatal("op inside NoGrad records a graph")
		}
	})
	ManualSeed(42)
	a := Float32s(Randn([]int64{5}, Float32, "cpu"))
	ManualSeed(42)
	b := Float32s(Randn([]int64{5}, Float32, "cpu"))
	c := Float32s(Randn([]int64{5}, Float32, "cpu"))
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different draws: %v vs %v", a, b)
		}
	}
	if a[0] == c[0] && a[1] == c[1] {
		t.Fatal("consecutive draws equal")
	}
	prev := NumThreads()
	SetNumThreads(1)
	if NumThreads() != 1 {
		t.Fatalf("threads %d after SetNumThreads(1)", NumThreads())
	}
	SetNumThreads(prev)
}

func TestBackwardAndGrad(t *testing.T) {
	// d/dx sum(x²·3) = 6x
	x := FromFloat64([]float64{1, -2, 0.5}, 3)
	SetRequiresGrad(x, true)
	if Defined(Grad(x)) {
		t.Fatal("gradient before backward")
	}
	Backward(Sum(MulScalar(Pow(x, 2), 3), false))
	assertClose(t, "grad", Float64s(Grad(x)), []float64{6, -12, 3}, 1e-12)
	// Backward of a non-scalar is libtorch's error, not a crash.
	y := MulScalar(x, 2)
	if err := Try(func() { Backward(y) }); err == nil {
		t.Fatal("backward of a vector succeeded")
	}
}

func TestResolveDevice(t *testing.T) {
	if d, err := ResolveDevice("cpu"); err != nil || d != "cpu" {
		t.Fatalf("cpu: %q %v", d, err)
	}
	d, err := ResolveDevice("auto")
	if err != nil {
		t.Fatal(err)
	}
	if CUDAAvailable() != (d == "cuda:0") {
		t.Fatalf("auto resolved to %s with CUDA %v", d, CUDAAvailable())
	}
	if _, err := ResolveDevice("tpu"); err == nil {
		t.Fatal("tpu accepted")
	}
	if !CUDAAvailable() {
		_, err := ResolveDevice("cuda")
		if err == nil || !strings.Contains(err.Error(), "no CUDA") {
			t.Fatalf("cuda on a CPU build: %v", err)
		}
	}
	if _, err := ResolveDevice("cuda:99"); err == nil {
		t.Fatal("cuda:99 accepted")
	}
}

// Uint8s reads bytes back as they were given, all 256 values, and converts other dtypes.
func TestUint8s(t *testing.T) {
	b := make([]uint8, 256)
	for i := range b {
		b[i] = uint8(i)
	}
	got := Uint8s(FromUint8(b, 16, 16))
	for i := range b {
		if got[i] != b[i] {
			t.Fatalf("byte %d: %d", i, got[i])
		}
	}
	if v := Uint8s(FromFloat32([]float32{3, 200}, 2)); v[0] != 3 || v[1] != 200 {
		t.Fatalf("from float32: %v", v)
	}
	if len(Uint8s(FromUint8(nil, 0))) != 0 {
		t.Fatal("empty tensor")
	}
}
