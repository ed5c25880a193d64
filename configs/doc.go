// Package configs holds sli2vol's configuration: the Go struct every command reads, the
// embedded defaults (defaults.yaml) and the YAML presets beside them (paper.yaml mirrors the
// paper's hyper-parameters; cpu-small.yaml trains on two cores). Precedence, lowest first:
// embedded defaults ← YAML file ← SLI2VOL_* environment ← command-line flags. Unknown keys
// and values of the wrong type are errors naming the file and the key.
package configs
