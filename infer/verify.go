package infer

// Sli2Vol's verification module (infer.verification; ../shared/docs/reference-facts.md): each
// propagated slice is checked against the slice it came from. Per structure, a propagated
// pixel is kept when its intensity is closer to the mean intensity inside the structure's
// mask on the previous slice than to the mean over a 5-pixel ring around that mask; the kept
// pixels then have their holes filled and are closed (dilated by 2 pixels, eroded by 2).
// Intensities are the raw image values (windowing would clip the contrast the rule compares).
// Structures are settled in ascending id order; a pixel claimed by an earlier one stays its.

const (
	verifyRing  = 5 // pixels: the band around the previous mask whose mean is "outside"
	verifyClose = 2 // pixels: the closing's radius
)

// verifier holds one slice geometry's structuring offsets.
type verifier struct {
	h, w        int
	ring, close [][2]int // disk offsets of radius verifyRing and verifyClose
}

func newVerifier(h, w int) *verifier {
	return &verifier{h: h, w: w, ring: disk(verifyRing), close: disk(verifyClose)}
}

// disk lists the offsets (dy, dx) with dy² + dx² ≤ r².
func disk(r int) [][2]int {
	var out [][2]int
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			if dy*dy+dx*dx <= r*r {
				out = append(out, [2]int{dy, dx})
			}
		}
	}
	return out
}

// verify is the module applied to mask (ids on slice n, intensities cur) given the previous
// slice's mask and intensities; ids lists the structures, ascending.
func (v *verifier) verify(mask, prevMask []int32, cur, prev []float32, ids []int32) []int32 {
	out := make([]int32, len(mask))
	for _, id := range ids {
		was := eq(prevMask, id)
		in, ok1 := meanOver(prev, was)
		ring, ok2 := meanOver(prev, andNot(v.morph(was, v.ring, true), was))
		kept := eq(mask, id)
		if ok1 && ok2 {
			for i, k := range kept {
				kept[i] = k && abs32(cur[i]-in) < abs32(cur[i]-ring)
			}
		}
		m := v.morph(v.morph(v.fillHoles(kept), v.close, true), v.close, false)
		for i, on := range m {
			if on && out[i] == 0 {
				out[i] = id
			}
		}
	}
	return out
}

func eq(m []int32, id int32) []bool {
	out := make([]bool, len(m))
	for i, v := range m {
		out[i] = v == id
	}
	return out
}

func andNot(a, b []bool) []bool {
	out := make([]bool, len(a))
	for i := range a {
		out[i] = a[i] && !b[i]
	}
	return out
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// meanOver is the mean of v where m is set, and whether any is.
func meanOver(v []float32, m []bool) (float32, bool) {
	var s float64
	n := 0
	for i, on := range m {
		if on {
			s += float64(v[i])
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return float32(s / float64(n)), true
}

// morph dilates (or erodes) m by the offsets; outside the slice counts as unset for a
// dilation and as set for an erosion (the border does not eat a structure that touches it).
func (v *verifier) morph(m []bool, offs [][2]int, dilate bool) []bool {
	out := make([]bool, len(m))
	for y := 0; y < v.h; y++ {
		for x := 0; x < v.w; x++ {
			hit := !dilate
			for _, o := range offs {
				yy, xx := y+o[0], x+o[1]
				on := !dilate
				if yy >= 0 && yy < v.h && xx >= 0 && xx < v.w {
					on = m[yy*v.w+xx]
				}
				if dilate && on {
					hit = true
					break
				}
				if !dilate && !on {
					hit = false
					break
				}
			}
			out[y*v.w+x] = hit
		}
	}
	return out
}

// fillHoles sets the unset pixels not connected (4-neighbourhood) to the slice's border.
func (v *verifier) fillHoles(m []bool) []bool {
	outside := make([]bool, len(m))
	var stack []int
	push := func(y, x int) {
		if i := y*v.w + x; !m[i] && !outside[i] {
			outside[i] = true
			stack = append(stack, i)
		}
	}
	for x := 0; x < v.w; x++ {
		push(0, x)
		push(v.h-1, x)
	}
	for y := 0; y < v.h; y++ {
		push(y, 0)
		push(y, v.w-1)
	}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		y, x := i/v.w, i%v.w
		if y > 0 {
			push(y-1, x)
		}
		if y < v.h-1 {
			push(y+1, x)
		}
		if x > 0 {
			push(y, x-1)
		}
		if x < v.w-1 {
			push(y, x+1)
		}
	}
	out := make([]bool, len(m))
	for i := range m {
		out[i] = !outside[i]
	}
	return out
}
