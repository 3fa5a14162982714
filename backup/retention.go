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
	items := make([]retItem, len(backups))
	for i, b := range backups {
		items[i] = retItem{id: b.ID, started: b.Started, good: b.Good()}
	}
	return planBy(r, backups, items)
}

// retItem is what retention needs to know of a backup.
type retItem struct {
	id      string
	started time.Time
	good    bool
}

// planBy applies r to backups, described by items (same order).
func planBy[T any](r Retention, backups []T, items []retItem) (keep, remove []T, err error) {
	kept, order, err := r.keepSet(items)
	if err != nil {
		return nil, nil, err
	}
	for _, i := range order {
		if kept[items[i].id] {
			keep = append(keep, backups[i])
		} else {
			remove = append(remove, backups[i])
		}
	}
	return keep, remove, nil
}

// keepSet returns the IDs to keep and the indexes of items newest first.
func (r Retention) keepSet(items []retItem) (map[string]bool, []int, error) {
	if err := r.validate(); err != nil {
		return nil, nil, err
	}
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := items[order[i]], items[order[j]]
		if !a.started.Equal(b.started) {
			return a.started.After(b.started)
		}
		return a.id > b.id
	})
	kept := map[string]bool{}
	pick := func(n int, period func(time.Time) string) {
		if n == 0 {
			return
		}
		var periods []string
		best := map[string]retItem{}
		for _, i := range order { // newest first
			b := items[i]
			p := period(b.started.In(loc))
			cur, seen := best[p]
			switch {
			case !seen:
				periods = append(periods, p)
				best[p] = b
			case !cur.good && b.good:
				best[p] = b
			}
		}
		for i, p := range periods {
			if i == n {
				break
			}
			kept[best[p].id] = true
		}
	}
	pick(r.Daily, func(t time.Time) string { return t.Format("2006-01-02") })
	pick(r.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) })
	pick(r.Monthly, func(t time.Time) string { return t.Format("2006-01") })
	// Never the last good backup (nor, when none is good, the newest).
	lastGood := ""
	for _, i := range order {
		if items[i].good {
			lastGood = items[i].id
			break
		}
	}
	if lastGood == "" && len(order) > 0 {
		lastGood = items[order[0]].id
	}
	if lastGood != "" {
		kept[lastGood] = true
	}
	return kept, order, nil
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
