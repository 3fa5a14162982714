package backup

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Retention is a grandfather-father-son policy: keep the newest backup of
// each of the Daily most recent days that have backups, of each of the
// Weekly most recent ISO weeks and of each of the Monthly most recent
// months; delete the rest. Within a period the newest good backup (see
// Backup.Good) is kept in preference to a newer one whose drill failed.
// Whatever the policy says, the newest good backup is never deleted.
type Retention struct {
	Daily, Weekly, Monthly int
	// Location draws the day, week and month boundaries; default UTC.
	Location *time.Location
}

func (r Retention) validate() error {
	if r.Daily < 0 || r.Weekly < 0 || r.Monthly < 0 {
		return fmt.Errorf("%w: retention counts must not be negative", ErrConfig)
	}
	if r.Daily+r.Weekly+r.Monthly == 0 {
		return fmt.Errorf("%w: retention keeps nothing (set Daily, Weekly or Monthly)", ErrConfig)
	}
	return nil
}

// Plan splits backups into those to keep and those to delete, both newest
// first. It does not touch any repository.
func (r Retention) Plan(backups []Backup) (keep, remove []Backup, err error) {
	if err := r.validate(); err != nil {
		return nil, nil, err
	}
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	sorted := append([]Backup(nil), backups...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if !sorted[i].Started.Equal(sorted[j].Started) {
			return sorted[i].Started.After(sorted[j].Started)
		}
		return sorted[i].ID > sorted[j].ID
	})
	kept := map[string]bool{}
	pick := func(n int, period func(time.Time) string) {
		if n == 0 {
			return
		}
		var order []string
		best := map[string]Backup{}
		for _, b := range sorted { // newest first
			p := period(b.Started.In(loc))
			cur, seen := best[p]
			switch {
			case !seen:
				order = append(order, p)
				best[p] = b
			case !cur.Good() && b.Good():
				best[p] = b
			}
		}
		for i, p := range order {
			if i == n {
				break
			}
			kept[best[p].ID] = true
		}
	}
	pick(r.Daily, func(t time.Time) string { return t.Format("2006-01-02") })
	pick(r.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) })
	pick(r.Monthly, func(t time.Time) string { return t.Format("2006-01") })
	// Never the last good backup (nor, when none is good, the newest).
	lastGood := ""
	for _, b := range sorted {
		if b.Good() {
			lastGood = b.ID
			break
		}
	}
	if lastGood == "" && len(sorted) > 0 {
		lastGood = sorted[0].ID
	}
	if lastGood != "" {
		kept[lastGood] = true
	}
	for _, b := range sorted {
		if kept[b.ID] {
			keep = append(keep, b)
		} else {
			remove = append(remove, b)
		}
	}
	return keep, remove, nil
}

// PruneReport lists what Prune kept and deleted.
type PruneReport struct {
	Kept, Removed []Backup
}

// Prune applies the retention policy to the backups of the pool's
// database and deletes the ones it does not keep (each backup's manifest
// first, so a half-deleted backup is never listed as complete).
func (m *Manager) Prune(ctx context.Context, r Retention) (PruneReport, error) {
	list, err := m.List(ctx)
	if err != nil {
		return PruneReport{}, err
	}
	keep, remove, err := r.Plan(list)
	if err != nil {
		return PruneReport{}, err
	}
	rep := PruneReport{Kept: keep}
	for _, b := range remove {
		if err := removeBackupObjects(ctx, m.cfg.Repository, b.ID); err != nil {
			return rep, fmt.Errorf("backup: pruning %s: %w", b.ID, err)
		}
		rep.Removed = append(rep.Removed, b)
		m.log.InfoContext(ctx, "backup: pruned", "id", b.ID, "started", b.Started)
	}
	return rep, nil
}
