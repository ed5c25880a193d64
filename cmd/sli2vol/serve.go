package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/serve"
)

// serveFlags are `sli2vol serve`'s own flags (--device and --config are global).
type serveFlags struct {
	model, addr, data, token, cors string
	maxUploadMB                    int64
}

func newServeCmd() *cobra.Command {
	var o serveFlags
	cmd := &cobra.Command{
		Use:   "serve --model RUN [--addr 127.0.0.1:8080] [--data DIR]",
		Short: "Serve the web page and the HTTP API (docs/api.md): annotate slices in a browser, get the 3D mask",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.model == "" {
				return fmt.Errorf("serve: --model RUN is required (a trained run folder)")
			}
			return runServe(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "trained run folder (sli2vol train --out)")
	f.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen address; any but loopback requires a token")
	f.StringVar(&o.data, "data", "", "folder whose volumes clients may open by relative path")
	f.StringVar(&o.token, "token", "", "token every request must carry (generated and printed when --addr is not loopback)")
	f.StringVar(&o.cors, "cors", "", "the one origin allowed to call the API from another site (none by default)")
	f.Int64Var(&o.maxUploadMB, "max-upload-mb", serve.DefaultLimits.MaxUploadBytes>>20, "largest upload, MiB")
	addInferFlags(cmd)
	return cmd
}

// runServe loads the model once, serves until SIGINT or SIGTERM, then cancels the running
// jobs and lets the open requests finish (5 s at most).
func runServe(cmd *cobra.Command, o serveFlags) error {
	if o.maxUploadMB <= 0 {
		return fmt.Errorf("serve: --max-upload-mb %d: want a positive size", o.maxUploadMB)
	}
	token := o.token
	if token == "" && serve.NeedsToken(o.addr) {
		token = serve.NewToken()
	}
	j, err := runJob(cmd, o.model)
	if err != nil {
		return err
	}
	// limits.max_voxels is the operator's (defaults ← --config ← SLI2VOL_*), not the run's.
	own, err := loadConfig(cmd, inferFlags)
	if err != nil {
		return err
	}
	srv, err := serve.New(serve.Options{Job: j, Page: pageFS, DataRoot: o.data, Token: token, CORSOrigin: o.cors,
		Limits: serve.Limits{MaxUploadBytes: o.maxUploadMB << 20, MaxVoxels: own.VolumeLimits().MaxVoxels},
		Info:   serve.Info{Version: version, Model: filepath.Base(filepath.Clean(o.model))}, Log: cmd.ErrOrStderr()})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("serve: --addr %s: %w", o.addr, err)
	}
	url := "http://" + ln.Addr().String() + "/"
	if token != "" {
		url += "?token=" + token
	}
	fmt.Fprintf(cmd.OutOrStdout(), "sli2vol serve: %s (model %s, %s, device %s)\n", url, o.model, j.Cfg.Model.Mode, j.Device)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop() // a second Ctrl-C kills at once
	srv.Close()
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("serve: shutting down: %w", err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), "sli2vol serve: stopped")
	return nil
}
