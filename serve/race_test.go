//go:build race

package serve

// raceEnabled: the race detector slows everything about tenfold, so timing tests skip.
const raceEnabled = true
