package infer

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A results section's numbers, derived by hand from the rows: model a has structure s on two
// cases (Dice 0.5, 0.7 → 60) and t on one (0.9 → 90): mean over structures 75, not the row
// mean 70; HD95 mean (2+4+6)/3 = 4; seconds per case ((1+2) + 3)/2 = 3. Its variants go in
// their columns of the same row, whatever their names; a model numbered apart ("a (2)") is a
// row of its own; a mean over no surface is –; drift bins weight distances by slice count and
// include both ends (20 in 11–20, 21 and 40 in 21–40, 41 in > 40).
func TestResultsSection(t *testing.T) {
	nan := math.NaN()
	ev := &Evaluation{Rows: []Row{
		{Case: "c1", Method: "a", Name: "s", Dice: 0.5, HD95: 2, Seconds: 1},
		{Case: "c1", Method: "a", Name: "t", Dice: 0.9, HD95: 4, Seconds: 2},
		{Case: "c2", Method: "a", Name: "s", Dice: 0.7, HD95: 6, Seconds: 3},
		{Case: "c1", Method: "a (adapted)", Name: "s", Dice: 1, HD95: 1, Seconds: 10},
		{Case: "c1", Method: "a (2) (verified)", Name: "s", Dice: 0.4, HD95: 3, Seconds: 4},
		{Case: "c1", Method: "a-av", Name: "s", Dice: 0, HD95: nan, Seconds: 5},
		{Case: "c1", Method: "copy (untrained)", Name: "s", Dice: 0.25, HD95: 8, Seconds: 0.5},
	}, drift: map[string]map[int][2]float64{
		"a":                {0: {2, 2}, 3: {0.5, 1}, 5: {1.5, 2}, 20: {0.3, 1}, 21: {0.2, 1}, 40: {0.4, 1}},
		"a (adapted)":      {0: {1, 1}},
		"copy (untrained)": {0: {1, 1}, 41: {0.1, 1}},
	}}
	methods := []Method{
		{Name: "copy (untrained)"},
		{Name: "a", Model: "a"},
		{Name: "a (adapted)", Model: "a", Variant: Variant{Adapted: true}},
		{Name: "a-av", Model: "a", Variant: Variant{Adapted: true, Verified: true}},
		{Name: "a (2) (verified)", Model: "a (2)", Variant: Variant{Verified: true}},
	}
	got := ev.ResultsSection("T", methods, "results/t-drift.png", "About.")
	for _, want := range []string{
		"## T\n",
		"| model | plain | adapted | verified | adapted + verified |\n|---|---|---|---|---|\n",
		"| copy (untrained) | **25.0** / 8.0 / 0.5 | – | – | – |\n",
		"| a | **75.0** / 4.0 / 3.0 | **100.0** / 1.0 / 10.0 | – | **0.0** / – / 5.0 |\n",
		"| a (2) | – | – | **40.0** / 3.0 / 4.0 | – |\n",
		// a: 0 → 2/2; 1–5 → (0.5+1.5)/(1+2); 11–20 → 0.3; 21–40 → (0.2+0.4)/2
		"| a | 100.0 | 66.7 | – | 30.0 | 30.0 | – |\n",
		"| copy (untrained) | 100.0 | – | – | – | – | 10.0 |\n",
		"![error drift](results/t-drift.png)\n",
		"\nAbout.\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("section lacks %q:\n%s", want, got)
		}
	}
}

func TestResultsKey(t *testing.T) {
	long := "CT: test ts_pulmonary_001 (pulmonary artery, 1.5 mm), trained on ts_aorta_001 + ts_abdomen_001"
	for _, c := range []struct{ title, key string }{
		{"CT: test ts_abdomen_001 (41 structures)", "ct-test-ts-abdomen-001-41-structures"},
		{"MRI — BraTS T1 → FLAIR", "mri-brats-t1-flair"},
		{"  ", ""},
		// cut at the last whole word within 64 − 9, then the first 4 bytes of sha256(title)
		{long, "ct-test-ts-pulmonary-001-pulmonary-artery-1-5-mm-" + sha8(long)}, // "trained" ends at 56
	} {
		if k := ResultsKey(c.title); k != c.key {
			t.Errorf("ResultsKey(%q) = %q, want %q", c.title, k, c.key)
		}
	}
	if a, b := ResultsKey(long+" seed 0"), ResultsKey(long+" seed 1"); a == b || len(a) > 64 {
		t.Errorf("titles differing late share a key or it is long: %q %q", a, b)
	}
}

func sha8(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

// Merging replaces a section in place and leaves the others byte for byte; a file evaluate
// did not write is refused and left as it was.
func TestMergeResults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "results.md")
	for _, s := range []struct{ key, body string }{{"one", "## One\n\nfirst\n"}, {"two", "## Two\n\nsecond\n"}, {"one", "## One\n\nredone\n"}} {
		if err := MergeResults(path, s.key, s.body); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	want := "# sli2vol results\n\n" + resultsHeader +
		"\n<!-- results section: one -->\n## One\n\nredone\n<!-- end of results section: one -->\n" +
		"\n<!-- results section: two -->\n## Two\n\nsecond\n<!-- end of results section: two -->\n"
	if string(b) != want {
		t.Fatalf("results file:\n%s\nwant:\n%s", b, want)
	}

	// a key that begins another key's name is a section of its own
	if err := MergeResults(path, "on", "## On\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != want+"\n<!-- results section: on -->\n## On\n<!-- end of results section: on -->\n" {
		t.Fatalf("after key on:\n%s", b)
	}

	mine := filepath.Join(dir, "notes.md")
	os.WriteFile(mine, []byte("# my notes\n"), 0o644)
	if err := MergeResults(mine, "one", "x"); err == nil || !strings.Contains(err.Error(), mine+" is not a sli2vol results file") {
		t.Fatalf("merge into a user's file: %v", err)
	}
	if err := CheckResultsFile(mine, "One"); err == nil {
		t.Fatal("CheckResultsFile accepted a user's file")
	}
	if b, _ := os.ReadFile(mine); string(b) != "# my notes\n" {
		t.Fatalf("the user's file changed: %q", b)
	}
	for _, c := range []struct{ path, title, err string }{
		{filepath.Join(dir, "no", "results.md"), "One", "is not a folder that exists"},
		{path, "--", "no letters or digits"},
	} {
		if err := CheckResultsFile(c.path, c.title); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("CheckResultsFile(%s, %q) = %v, want %q", c.path, c.title, err, c.err)
		}
	}
	// a section cut short (its end marker edited away) is refused, not merged over
	b, _ = os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), "<!-- end of results section: two -->\n", "", 1)), 0o644)
	if err := CheckResultsFile(path, "Two"); err == nil || !strings.Contains(err.Error(), "section two has no end marker") {
		t.Errorf("a section without its end: %v", err)
	}
}
