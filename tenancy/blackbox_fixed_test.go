package tenancy_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/tenancy"
)

// Text fields that PostgreSQL cannot store (NUL, invalid UTF-8) are
// malformed input: ErrInvalid, not a database error.
func TestBlackboxCreateRefusesUnstorableText(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for name, nt := range map[string]tenancy.NewTenant{
		"NUL in name":       {Slug: "n1", Name: "a\x00b"},
		"bad UTF-8 in name": {Slug: "n2", Name: "a\xffb"},
		"NUL in plan":       {Slug: "n3", Name: "ok", Plan: "pro\x00"},
		"NUL in settings":   {Slug: "n4", Name: "ok", Settings: map[string]any{"note": "a\x00b"}},
	} {
		_, err := e.m.Create(ctx, e.owner, nt)
		assert.ErrorIs(t, err, tenancy.ErrInvalid, "%s: %v", name, err)
	}
	tn := e.tenant(t, "fine", tenancy.Shared)
	_, err := e.m.SetPlan(ctx, e.owner, tn.ID, "pro\x00")
	assert.ErrorIs(t, err, tenancy.ErrInvalid, "SetPlan with NUL: %v", err)
	_, err = e.m.SetSettings(ctx, e.owner, tn.ID, map[string]any{"k": "\x00"})
	assert.ErrorIs(t, err, tenancy.ErrInvalid, "SetSettings with NUL: %v", err)
	_ = require.NoError
}
