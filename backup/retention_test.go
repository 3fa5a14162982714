package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
)

func mkBackups(times ...string) []backup.Backup {
	var out []backup.Backup
	for _, s := range times {
		ts, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			panic(err)
		}
		out = append(out, backup.Backup{Manifest: backup.Manifest{ID: s, Started: ts}})
	}
	return out
}

func ids(bs []backup.Backup) []string {
	out := make([]string, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.ID)
	}
	sort.Strings(out)
	return out
}

// daily backups at 02:00 from start for n days
func everyDay(start string, n int) []string {
	t0, _ := time.Parse("2006-01-02", start)
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, t0.AddDate(0, 0, i).Format("2006-01-02")+" 02:00")
	}
	return out
}

func TestRetentionPlan(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		policy  backup.Retention
		backups []string
		failed  []string // IDs whose last drill failed
		keep    []string
	}{
		{
			name:    "daily keeps the newest of each of the last N days",
			policy:  backup.Retention{Daily: 3},
			backups: []string{"2026-11-01 02:00", "2026-11-02 02:00", "2026-11-02 14:00", "2026-11-03 02:00", "2026-11-04 02:00"},
			keep:    []string{"2026-11-02 14:00", "2026-11-03 02:00", "2026-11-04 02:00"},
		},
		{
			name:    "days without backups do not count",
			policy:  backup.Retention{Daily: 2},
			backups: []string{"2026-10-01 02:00", "2026-10-20 02:00", "2026-11-04 02:00"},
			keep:    []string{"2026-10-20 02:00", "2026-11-04 02:00"},
		},
		{
			name:   "weekly uses ISO weeks (Monday start)",
			policy: backup.Retention{Weekly: 2},
			// 2026-11-01 is a Sunday (week 44), 11-02 Monday (week 45), 11-09 Monday (week 46)
			backups: []string{"2026-10-31 02:00", "2026-11-01 02:00", "2026-11-02 02:00", "2026-11-08 02:00", "2026-11-09 02:00"},
			keep:    []string{"2026-11-08 02:00", "2026-11-09 02:00"},
		},
		{
			name:    "monthly keeps the last backup of each month",
			policy:  backup.Retention{Monthly: 2},
			backups: []string{"2026-09-30 02:00", "2026-10-01 02:00", "2026-10-31 02:00", "2026-11-01 02:00", "2026-11-15 02:00"},
			keep:    []string{"2026-10-31 02:00", "2026-11-15 02:00"},
		},
		{
			name:    "GFS over 70 daily backups",
			policy:  backup.Retention{Daily: 7, Weekly: 4, Monthly: 3},
			backups: everyDay("2026-09-01", 70), // 2026-09-01 .. 2026-11-09
			keep: []string{
				// 3 months: last of September, October, and the newest in November
				"2026-09-30 02:00", "2026-10-31 02:00",
				// 4 ISO weeks: Sundays 10-25, 11-01, 11-08 and the newest (Mon 11-09, week 46)
				"2026-10-25 02:00", "2026-11-01 02:00", "2026-11-08 02:00",
				// 7 days: 11-03 .. 11-09
				"2026-11-03 02:00", "2026-11-04 02:00", "2026-11-05 02:00", "2026-11-06 02:00", "2026-11-07 02:00",
				"2026-11-09 02:00",
			},
		},
		{
			name:    "a newer backup with a failed drill does not displace the good one",
			policy:  backup.Retention{Daily: 1},
			backups: []string{"2026-11-04 02:00", "2026-11-04 14:00"},
			failed:  []string{"2026-11-04 14:00"},
			keep:    []string{"2026-11-04 02:00"},
		},
		{
			name:    "the last good backup is kept even when the policy would drop it",
			policy:  backup.Retention{Daily: 2},
			backups: []string{"2026-11-01 02:00", "2026-11-05 02:00", "2026-11-06 02:00"},
			failed:  []string{"2026-11-05 02:00", "2026-11-06 02:00"},
			keep:    []string{"2026-11-01 02:00", "2026-11-05 02:00", "2026-11-06 02:00"},
		},
		{
			name:    "nothing good at all: the newest stays",
			policy:  backup.Retention{Daily: 1},
			backups: []string{"2026-11-01 02:00", "2026-11-02 02:00"},
			failed:  []string{"2026-11-01 02:00", "2026-11-02 02:00"},
			keep:    []string{"2026-11-02 02:00"},
		},
		{
			name:    "no backups",
			policy:  backup.Retention{Daily: 1},
			backups: nil,
			keep:    []string{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs := mkBackups(tc.backups...)
			fail := map[string]bool{}
			for _, f := range tc.failed {
				fail[f] = true
			}
			for i := range bs {
				if fail[bs[i].ID] {
					bs[i].LastDrill = &backup.DrillRecord{Passed: false}
				} else if i%2 == 0 {
					bs[i].LastDrill = &backup.DrillRecord{Passed: true}
				}
			}
			keep, remove, err := tc.policy.Plan(bs)
			require.NoError(t, err)
			want := append([]string{}, tc.keep...)
			sort.Strings(want)
			assert.Equal(t, want, ids(keep))
			assert.Len(t, remove, len(bs)-len(keep))
			all := append(ids(keep), ids(remove)...)
			sort.Strings(all)
			assert.Equal(t, ids(bs), all, "every backup is either kept or removed")
		})
	}
}

func TestRetentionTimeZone(t *testing.T) {
	t.Parallel()
	// 23:30 UTC on Nov 3 is already Nov 4 in Berlin (UTC+1).
	bs := mkBackups("2026-11-03 22:30", "2026-11-03 23:30")
	berlin := time.FixedZone("CET", 3600)
	keep, _, err := backup.Retention{Daily: 2, Location: berlin}.Plan(bs)
	require.NoError(t, err)
	assert.Len(t, keep, 2)
	keep, _, err = backup.Retention{Daily: 2}.Plan(bs)
	require.NoError(t, err)
	assert.Equal(t, []string{"2026-11-03 23:30"}, ids(keep), "in UTC both are on one day")
}

func TestRetentionValidates(t *testing.T) {
	t.Parallel()
	for _, r := range []backup.Retention{{}, {Daily: -1, Weekly: 3}} {
		_, _, err := r.Plan(mkBackups("2026-11-01 02:00"))
		assert.ErrorIs(t, err, backup.ErrConfig, fmt.Sprint(r))
	}
}

// Prune deletes exactly what the plan removes, from a real repository.
func TestPrune(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	seed(t, db, 100)
	m, repo := newManager(t, db, backup.Config{})
	var made []string
	for i := 0; i < 3; i++ {
		man, err := m.Dump(ctx)
		require.NoError(t, err)
		made = append(made, man.ID)
	}
	// All three were taken today: Daily 1 keeps only the newest.
	rep, err := m.Prune(ctx, backup.Retention{Daily: 1})
	require.NoError(t, err)
	require.Len(t, rep.Kept, 1)
	assert.Equal(t, made[2], rep.Kept[0].ID)
	assert.ElementsMatch(t, made[:2], ids(rep.Removed))
	objs, err := repo.List(ctx, "logical/")
	require.NoError(t, err)
	for _, o := range objs {
		assert.Contains(t, o.Name, made[2])
	}
	_, err = m.Prune(ctx, backup.Retention{})
	assert.ErrorIs(t, err, backup.ErrConfig)
}

// Base backups in a repository follow the same retention: weekly base
// backups on Sundays Sep 6 .. Nov 1, the two newest failed verification.
// Weekly 2 keeps the only backup of each of the last two weeks (Nov 1,
// Oct 25, failed as they are); Monthly 3 keeps the newest good one of
// November (none: Nov 1), October (Oct 18) and September (Sep 27); Oct 18
// is also the newest good one.
func TestPruneBaseBackups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo, err := backup.NewDirRepository(t.TempDir())
	require.NoError(t, err)
	put := func(name string, v any) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		_, err = repo.Put(ctx, name, bytes.NewReader(b))
		require.NoError(t, err)
	}
	t0 := time.Date(2026, 9, 6, 3, 30, 0, 0, time.UTC) // a Sunday
	var all []string
	for i := 0; i < 9; i++ {
		started := t0.AddDate(0, 0, 7*i)
		id := started.Format("20060102T150405.000Z") + fmt.Sprintf("-%06x", i)
		all = append(all, id)
		put("base/"+id+"/base.tar", "data")
		put("base/"+id+"/manifest.json", backup.BaseManifest{ID: id, Started: started, Files: []backup.File{{Name: "base.tar"}}})
		if i >= 7 {
			put("base/"+id+"/verify-20261201T000000.000000000Z.json", backup.DrillRecord{At: started, Passed: false, Error: "checksum"})
		}
	}
	list, err := backup.ListBaseBackups(ctx, repo)
	require.NoError(t, err)
	require.Len(t, list, 9)
	assert.False(t, list[8].Good())
	assert.True(t, list[6].Good())

	kept, removed, err := backup.PruneBaseBackups(ctx, repo, backup.Retention{Weekly: 2, Monthly: 3})
	require.NoError(t, err)
	var keptIDs []string
	for _, b := range kept {
		keptIDs = append(keptIDs, b.ID)
	}
	want := []string{all[8], all[7], all[6], all[3]} // Nov 1, Oct 25, Oct 18, Sep 27
	assert.ElementsMatch(t, want, keptIDs)
	assert.Len(t, removed, 5)
	list, err = backup.ListBaseBackups(ctx, repo)
	require.NoError(t, err)
	var left []string
	for _, b := range list {
		left = append(left, b.ID)
	}
	assert.ElementsMatch(t, want, left)
	objs, err := repo.List(ctx, "base/")
	require.NoError(t, err)
	for _, o := range objs {
		id, _, _ := strings.Cut(strings.TrimPrefix(o.Name, "base/"), "/")
		assert.Contains(t, want, id, "no file of a pruned base backup is left: %s", o.Name)
	}
	_, _, err = backup.PruneBaseBackups(ctx, repo, backup.Retention{})
	assert.ErrorIs(t, err, backup.ErrConfig)
}
