package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/sli2vol/sli2vol/data"
)

// apiError is an error with the HTTP status it answers with.
type apiError struct {
	status int
	err    error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

// fail is an apiError with a formatted message (%w wraps as fmt.Errorf does).
func fail(status int, format string, a ...any) error {
	return &apiError{status: status, err: fmt.Errorf(format, a...)}
}

// statusOf is the status an error answers with: its own, 413 for a volume over the voxel
// limit or a body over the upload limit, else 400 (a bad input).
func statusOf(err error) int {
	var ae *apiError
	var vl *data.VoxelLimitError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae.status
	case errors.As(err, &vl), errors.As(err, &mb):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers with err's status and {"error": one line}.
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), map[string]string{"error": oneLine(err.Error())})
}

// oneLine folds a message onto one line (readers' messages may quote file content).
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
