package models

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sli2vol/sli2vol/torchx"
)

// SummaryRow is one group of parameters (the first two levels of their names).
type SummaryRow struct {
	Group  string
	Params int64
}

// Summarize counts m's parameters per group ("encoder.layer1", "encoder.conv1", ...).
func Summarize(m Module) []SummaryRow {
	counts := map[string]int64{}
	for _, p := range uniqueParams(m) {
		parts := strings.SplitN(p.name, ".", 3)
		g := parts[0]
		if len(parts) == 3 {
			g += "." + parts[1]
		}
		counts[g] += torchx.Numel(*p.t)
	}
	rows := make([]SummaryRow, 0, len(counts))
	for g, n := range counts {
		rows = append(rows, SummaryRow{g, n})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Group < rows[j].Group })
	return rows
}

// WriteSummary prints the network's shape and parameter counts.
func (m *CFN) WriteSummary(w io.Writer) {
	s := 2*m.Radius + 1
	name := "CFN (Sli2Vol)"
	if m.PL {
		name = "OEG-CFN (Sli2Vol+)"
	}
	fmt.Fprintf(w, "model %s: input %d channels (%T), affinity window %d×%d\n", name, m.Input.Channels(), m.Input, s, s)
	var total int64
	for _, r := range Summarize(m) {
		fmt.Fprintf(w, "  %-24s %12d\n", r.Group, r.Params)
		total += r.Params
	}
	fmt.Fprintf(w, "  %-24s %12d\n", "total", total)
}

// WriteSummary prints UNETR++'s patch, token grids and parameter counts.
func (m *UNETRPP) WriteSummary(w io.Writer) {
	c := m.Config
	fmt.Fprintf(w, "UNETR++: patch %v, embedding %v, %d classes, deep supervision %v\n", c.PatchSize, c.EmbedPatch, c.Classes, c.DeepSupervision)
	for i := range 4 {
		fmt.Fprintf(w, "  stage %d: %v tokens, %d channels, %d EPA blocks, spatial projection %d\n", i+1, c.StageGrid(i), c.Dims[i], c.Depths[i], c.ProjSize[i])
	}
	var total int64
	for _, r := range Summarize(m) {
		fmt.Fprintf(w, "  %-32s %12d\n", r.Group, r.Params)
		total += r.Params
	}
	fmt.Fprintf(w, "  %-32s %12d\n", "total", total)
}
