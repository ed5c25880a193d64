package infer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A results section's numbers, derived by hand from six rows: model a has structure s on two
// cases (Dice 0.5, 0.7 → 60) and t on one (0.9 → 90): mean over structures 75, not the row
// mean 70; HD95 mean (2+4+6)/3 = 4; seconds per case ((1+2) + 3)/2 = 3. Its adapted variant
// goes in the adapted column of the same row; the drift bins weight distances by slice count.
func TestResultsSection(t *testing.T) {
	ev := &Evaluation{Rows: []Row{
		{Case: "c1", Method: "a", Name: "s", Dice: 0.5, HD95: 2, Seconds: 1},
		{Case: "c1", Method: "a", Name: "t", Dice: 0.9, HD95: 4, Seconds: 2},
		{Case: "c2", Method: "a", Name: "s", Dice: 0.7, HD95: 6, Seconds: 3},
		{Case: "c1", Method: "a (adapted)", Name: "s", Dice: 1, HD95: 1, Seconds: 10},
		{Case: "c1", Method: "copy", Name: "s", Dice: 0.25, HD95: 8, Seconds: 0.5},
	}, drift: map[string]map[int][2]float64{
		"a":           {0: {2, 2}, 3: {0.5, 1}, 5: {1.5, 2}, 30: {0.2, 1}},
		"a (adapted)": {0: {1, 1}},
		"copy":        {0: {1, 1}, 50: {0.1, 1}},
	}}
	got := ev.ResultsSection("T", []string{"copy", "a", "a (adapted)"}, "results/t-drift.png", "About.")
	for _, want := range []string{
		"## T\n",
		"| model | plain | adapted |\n|---|---|---|\n",
		"| copy | **25.0** / 8.0 / 0.5 | – |\n",
		"| a | **75.0** / 4.0 / 3.0 | **100.0** / 1.0 / 10.0 |\n",
		// a: distance 0 → 2/2; 1–5 → (0.5+1.5)/(1+2); 21–40 → 0.2
		"| a | 100.0 | 66.7 | – | – | 20.0 | – |\n",
		"| copy | 100.0 | – | – | – | – | 10.0 |\n",
		"![error drift](results/t-drift.png)\n",
		"\nAbout.\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("section lacks %q:\n%s", want, got)
		}
	}
}

func TestResultsKey(t *testing.T) {
	for _, c := range []struct{ title, key string }{
		{"CT: test ts_abdomen_001 (41 structures)", "ct-test-ts-abdomen-001-41-structures"},
		{"MRI — BraTS T1 → FLAIR", "mri-brats-t1-flair"},
		{"  ", ""},
	} {
		if k := ResultsKey(c.title); k != c.key {
			t.Errorf("ResultsKey(%q) = %q, want %q", c.title, k, c.key)
		}
	}
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

	mine := filepath.Join(dir, "notes.md")
	os.WriteFile(mine, []byte("# my notes\n"), 0o644)
	if err := MergeResults(mine, "one", "x"); err == nil || !strings.Contains(err.Error(), "not a sli2vol results file") {
		t.Fatalf("merge into a user's file: %v", err)
	}
	if err := CheckResultsFile(filepath.Join(dir, "no", "results.md")); err == nil {
		t.Fatal("a results file in a missing folder was accepted")
	}
	if b, _ := os.ReadFile(mine); string(b) != "# my notes\n" {
		t.Fatalf("the user's file changed: %q", b)
	}
}
