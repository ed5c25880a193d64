package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// untrainedRun writes a run folder (config and model.pt) of the cpu-small network, untrained.
func untrainedRun(t *testing.T) string {
	dir := t.TempDir()
	c, err := configs.Load("../../configs/cpu-small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := runs.NewCFN(c.Model)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := torchx.EncodeStateDict(models.StateDict(m))
	if err == nil {
		err = runs.WriteConfig(dir, c)
	}
	if err == nil {
		err = os.WriteFile(runs.Path(dir, runs.ModelFile), sd, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// `sli2vol serve` on a loopback address serves without a token; on any other address it
// generates one, prints it in the URL and requires it. limits.max_voxels is the command's
// setting. SIGTERM stops it with status 0.
func TestServeCommand(t *testing.T) {
	model := untrainedRun(t)
	for _, tc := range []struct{ addr, want string }{{"127.0.0.1:0", ""}, {"0.0.0.0:0", "?token="}} {
		p, errOut := cliProcess("serve", "--model", model, "--addr", tc.addr, "--threads", "1", "--data", filepath.Dir(model))
		p.Env = append(p.Env, "SLI2VOL_LIMITS_MAX_VOXELS=123456") // the operator's limit, not the run's
		stdout, _ := p.StdoutPipe()
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewReader(stdout)
		first, err := lines.ReadString('\n')
		if err != nil {
			p.Process.Kill()
			t.Fatalf("serve %s: no URL (%v): %s", tc.addr, err, errOut)
		}
		url := strings.Fields(strings.TrimPrefix(first, "sli2vol serve: "))[0]
		if strings.Contains(url, "?token=") != (tc.want != "") {
			t.Errorf("serve %s printed %q", tc.addr, url)
		}
		base, query, _ := strings.Cut(url, "?")
		if code, _ := get(t, base+"api/info"); tc.want != "" && code != 401 || tc.want == "" && code != 200 {
			t.Errorf("serve %s: /api/info without a token: %d", tc.addr, code)
		}
		if code, body := get(t, base+"api/info?"+query); code != 200 || !strings.Contains(body, `"max_voxels":123456`) {
			t.Errorf("serve %s: /api/info with the printed URL's token: %d %s", tc.addr, code, body)
		}
		p.Process.Signal(syscall.SIGTERM)
		rest, _ := io.ReadAll(lines)
		if err := p.Wait(); err != nil || !strings.Contains(string(rest), "stopped") {
			t.Fatalf("serve %s after SIGTERM: %v, %q %s", tc.addr, err, rest, errOut)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
