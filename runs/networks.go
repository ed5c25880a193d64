package runs

import (
	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/models"
)

// CFNConfig translates the config's model section into the network's own config.
func CFNConfig(m configs.Model) models.CFNConfig {
	return models.CFNConfig{PL: m.Mode.UsesPL(), Width: m.Width, Stages: m.Stages, BlocksPerStage: m.BlocksPerStage,
		FeatureDim: m.FeatureDim, Radius: m.Radius, EdgeRadius: m.EdgeRadius, GEIGDirections: m.GEIG.Directions,
		GEIGScales: m.GEIG.Scales, SeparatePLEncoder: m.SeparatePLEncoder}
}

// NewCFN builds the correspondence-flow network the model section describes, fresh weights.
func NewCFN(m configs.Model) (*models.CFN, error) { return models.NewCFN(CFNConfig(m)) }

// UNETRConfig sizes UNETR++ from the config's unetr section, for inChannels input channels
// and classes output classes (background included).
func UNETRConfig(u configs.UNETR, inChannels, classes int) models.UNETRPPConfig {
	return models.UNETRPPConfig{
		InChannels: inChannels, Classes: classes, PatchSize: u.PatchSize, EmbedPatch: u.EmbedPatch,
		FeatureSize: u.FeatureSize, Dims: u.Dims, Depths: u.Depths, Heads: u.Heads, ProjSize: u.ProjSize,
		DecoderProjSize: u.DecoderProjSize, DecoderDepth: u.DecoderDepth, Dropout: u.Dropout,
		DeepSupervision: u.DeepSupervision,
	}
}
