package infer

// Ranks splits per-case work (pseudo-labels, refinement predictions) across the processes of
// a distributed launch (dist.Group); nil runs every case in this process. Each case is done
// once, by rank (its index mod Size); each rank writes its cases' files into the shared output
// folder, and rank 0 writes the records that cover them all.
type Ranks interface {
	Rank() int
	Size() int
	// AllGatherBytes returns every rank's b, in rank order, on every rank.
	AllGatherBytes(b []byte) ([][]byte, error)
	Barrier() error
}

// mine reports whether this process does case i.
func mine(r Ranks, i int) bool { return r == nil || i%r.Size() == r.Rank() }

// leader reports whether this process writes the shared records (rank 0, or a single process).
func leader(r Ranks) bool { return r == nil || r.Rank() == 0 }
