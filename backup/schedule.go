package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/justpg/justpg/jobs"
)

// Schedule says which backup work the jobs package runs periodically (see
// Manager.PeriodicJobs). Zero values are the documented defaults.
type Schedule struct {
	// Dump is when the nightly job runs: Manager.Dump, then Manager.Drill
	// of that dump, then Manager.Prune with Retention. A cron expression or
	// "@every <duration>" as jobs.PeriodicJob takes; default "15 2 * * *"
	// (02:15 UTC every day); "-" turns it off.
	Dump string
	// Retention is applied to the logical backups after every drill; the
	// zero value prunes nothing.
	Retention Retention
	// BaseBackup, if not nil, turns on the weekly job: StoreBaseBackup into
	// the Manager's repository, VerifyStoredBaseBackup, then
	// PruneBaseBackups with BaseRetention.
	BaseBackup *BaseBackupOptions
	// BaseBackupSchedule is when the base backup job runs; default
	// "30 3 * * 0" (Sundays 03:30 UTC).
	BaseBackupSchedule string
	// BaseRetention is applied to the base backups after each one; the
	// zero value prunes nothing.
	BaseRetention Retention
	// Queue is the jobs queue of the backup jobs; default "backup". Work
	// it with MaxWorkers 1 so that backups never overlap.
	Queue string
	// Timeout bounds each run; default 12h.
	Timeout time.Duration
}

// DumpJobArgs are the args of the periodic dump + drill + prune job.
type DumpJobArgs struct {
	// Slot is the scheduled time the job was inserted for.
	Slot time.Time `json:"slot"`
}

// Kind implements jobs.JobArgs.
func (DumpJobArgs) Kind() string { return "justpg.backup.dump" }

// BaseBackupJobArgs are the args of the periodic base backup job.
type BaseBackupJobArgs struct {
	// Slot is the scheduled time the job was inserted for.
	Slot time.Time `json:"slot"`
}

// Kind implements jobs.JobArgs.
func (BaseBackupJobArgs) Kind() string { return "justpg.backup.base" }

// PeriodicJobs registers the workers of the scheduled backup jobs on w
// and returns the periodic jobs to put into jobs.Config.Periodic:
//
//	w := jobs.NewWorkers()
//	periodic, err := mgr.PeriodicJobs(w, backup.Schedule{Retention: backup.Retention{Daily: 7, Weekly: 4, Monthly: 6}})
//	client, err := jobs.New(systemPool, jobs.Config{Workers: w, Periodic: periodic,
//		Queues: map[string]jobs.QueueConfig{"backup": {MaxWorkers: 1}}})
//
// Call it once per Workers: like jobs.AddWorker, registering the same kind
// twice panics. The jobs client's elected leader inserts each slot once however many
// instances run. A failed dump is retried (three attempts); a failed drill
// is not (the backup stays as it is, marked bad, and Config.OnDrill has
// raised the alert): the job is cancelled with the drill's error and the
// next slot takes a new backup. Retention runs only after a drill passed,
// and never deletes the newest good backup anyway.
//
// The Manager's pool is the one the drill and dump run on: with row-level
// security, a role that bypasses it (see the package docs), not the
// application's tenant-scoped role.
func (m *Manager) PeriodicJobs(w *jobs.Workers, s Schedule) ([]jobs.PeriodicJob, error) {
	if w == nil {
		return nil, fmt.Errorf("%w: nil jobs.Workers", ErrConfig)
	}
	if s.Dump == "" {
		s.Dump = "15 2 * * *"
	}
	if s.BaseBackupSchedule == "" {
		s.BaseBackupSchedule = "30 3 * * 0"
	}
	if s.Queue == "" {
		s.Queue = "backup"
	}
	if s.Timeout == 0 {
		s.Timeout = 12 * time.Hour
	}
	if s.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative Schedule.Timeout", ErrConfig)
	}
	keep := func(r Retention) bool { return r != (Retention{}) }
	for _, r := range []Retention{s.Retention, s.BaseRetention} {
		if keep(r) {
			if err := r.validate(); err != nil {
				return nil, err
			}
		}
	}
	opts := &jobs.InsertOpts{Queue: s.Queue, MaxAttempts: 3}
	var out []jobs.PeriodicJob
	if s.Dump != "-" {
		jobs.AddWorker(w, func(ctx context.Context, j *jobs.Job[DumpJobArgs]) error {
			man, err := m.Dump(ctx)
			if err != nil {
				return err
			}
			if _, err := m.Drill(ctx, man.ID); err != nil {
				if ctx.Err() != nil {
					return err // shutting down: let the job be retried
				}
				return jobs.Cancel(err)
			}
			if keep(s.Retention) {
				if _, err := m.Prune(ctx, s.Retention); err != nil {
					return err
				}
			}
			return nil
		}, jobs.WorkerOptions{Timeout: s.Timeout})
		out = append(out, jobs.PeriodicJob{Name: "justpg.backup.dump", Schedule: s.Dump,
			Args: func(slot time.Time) (jobs.JobArgs, *jobs.InsertOpts) { return DumpJobArgs{Slot: slot}, opts }})
	}
	if s.BaseBackup != nil {
		bo := *s.BaseBackup
		if bo.ConnString == "" {
			return nil, fmt.Errorf("%w: Schedule.BaseBackup.ConnString is required", ErrConfig)
		}
		if bo.TempDir == "" {
			bo.TempDir = m.cfg.TempDir
		}
		repo := m.cfg.Repository
		jobs.AddWorker(w, func(ctx context.Context, j *jobs.Job[BaseBackupJobArgs]) error {
			man, err := StoreBaseBackup(ctx, repo, bo)
			if err != nil {
				return err
			}
			if err := VerifyStoredBaseBackup(ctx, repo, man.ID, bo.BinDir, bo.TempDir); err != nil {
				m.log.ErrorContext(ctx, "backup: base backup verification FAILED", "id", man.ID, "err", err)
				if ctx.Err() != nil || !errors.Is(err, ErrChecksum) {
					return err
				}
				return jobs.Cancel(err)
			}
			m.log.InfoContext(ctx, "backup: base backup stored and verified", "id", man.ID, "bytes", man.Size)
			if keep(s.BaseRetention) {
				if _, _, err := PruneBaseBackups(ctx, repo, s.BaseRetention); err != nil {
					return err
				}
			}
			return nil
		}, jobs.WorkerOptions{Timeout: s.Timeout})
		out = append(out, jobs.PeriodicJob{Name: "justpg.backup.base", Schedule: s.BaseBackupSchedule,
			Args: func(slot time.Time) (jobs.JobArgs, *jobs.InsertOpts) { return BaseBackupJobArgs{Slot: slot}, opts }})
	}
	return out, nil
}
