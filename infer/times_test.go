package infer

import "testing"

// times.csv sums each method's rows per case (in the order scored) and gives their mean.
func TestTimesCSV(t *testing.T) {
	ev := &Evaluation{Rows: []Row{
		{Case: "x", Method: "a", Seconds: 1}, {Case: "x", Method: "b", Seconds: 4},
		{Case: "x", Method: "a", Seconds: 0.5}, {Case: "y", Method: "a", Seconds: 2},
	}}
	want := "method,case,seconds\na,x,1.500\na,y,2.000\na,mean,1.750\nb,x,4.000\nb,mean,4.000\n"
	if got := string(ev.timesCSV([]string{"a", "b", "c"})); got != want {
		t.Fatalf("times.csv:\n%s\nwant:\n%s", got, want)
	}
}
