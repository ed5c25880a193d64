package models

import "testing"

// visitProbe is a Module that counts its visits through the Visitor's Mode callback; its
// Visit reads the receiver, so visiting a nil *visitProbe would panic.
type visitProbe struct{ training bool }

func (p *visitProbe) Visit(_ string, v *Visitor) { v.mode(&p.training) }

// visitFunc is a Module of a func type, to have a nil that is not a pointer.
type visitFunc func(prefix string, v *Visitor)

func (f visitFunc) Visit(prefix string, v *Visitor) { f(prefix, v) }

// visitValue is a Module held by value: never nil.
type visitValue struct{}

func (visitValue) Visit(_ string, v *Visitor) { v.mode(new(bool)) }

func TestVisitChildSkipsNil(t *testing.T) {
	var nilProbe *visitProbe
	var nilFunc visitFunc
	for _, c := range []struct {
		name  string
		child Module
		want  int // visits
	}{
		{"nil interface", nil, 0},
		{"typed nil pointer", nilProbe, 0},
		{"typed nil func", nilFunc, 0},
		{"pointer", &visitProbe{}, 1},
		{"func", visitFunc(func(_ string, v *Visitor) { v.mode(new(bool)) }), 1},
		{"value", visitValue{}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := 0
			visitChild("", c.name, c.child, &Visitor{Mode: func(*bool) { n++ }})
			if n != c.want {
				t.Fatalf("%d visits, want %d", n, c.want)
			}
		})
	}
}
