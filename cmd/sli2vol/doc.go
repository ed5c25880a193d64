// Command sli2vol segments a structure in a 3D CT or MRI volume from one annotated slice
// (Sli2Vol+). This package only wires cobra commands and flags to the config and to the
// train, infer and data packages; no logic lives here.
package main
