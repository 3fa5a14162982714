package jobs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// PeriodicJob is a job the elected leader inserts on a schedule. Each
// scheduled slot is inserted once across any number of clients: only the
// leader inserts, and the insert carries a unique key made of the name and
// the slot, so even two clients that both believe they lead (a lease that
// expired during a pause) insert a slot once.
type PeriodicJob struct {
	// Name identifies the schedule; it must be unique and stable across
	// deployments.
	Name string
	// Schedule is a standard five-field cron expression ("*/5 * * * *"), a
	// descriptor such as "@hourly", or "@every <duration>" (slots aligned to
	// multiples of the duration since the Unix epoch, so every client
	// computes the same slots). Cron schedules are evaluated in UTC unless
	// prefixed with "CRON_TZ=<zone> ".
	Schedule string
	// Args returns the args and options of the slot's job.
	Args func(slot time.Time) (JobArgs, *InsertOpts)
}

type periodicState struct {
	job   PeriodicJob
	every time.Duration
	sched cron.Schedule
	// cursor is the last slot handled by this client while leader.
	cursor time.Time
}

func (c *Client) preparePeriodic(p PeriodicJob) (*periodicState, error) {
	if p.Name == "" {
		return nil, invalid("periodic job has no name")
	}
	if p.Args == nil {
		return nil, invalid("periodic job %q has no Args function", p.Name)
	}
	for _, q := range c.periodic {
		if q.job.Name == p.Name {
			return nil, invalid("periodic job name %q is used twice", p.Name)
		}
	}
	ps := &periodicState{job: p}
	if rest, ok := strings.CutPrefix(strings.TrimSpace(p.Schedule), "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < time.Second && d != d.Truncate(time.Millisecond) || d <= 0 {
			return nil, invalid("periodic job %q: bad schedule %q: want @every <positive duration>", p.Name, p.Schedule)
		}
		ps.every = d
		return ps, nil
	}
	s, err := ParseSchedule(p.Schedule)
	if err != nil {
		return nil, invalid("periodic job %q: %v", p.Name, err)
	}
	ps.sched = s
	return ps, nil
}

// ParseSchedule parses a standard cron expression or descriptor. It is the
// validator New applies to PeriodicJob.Schedule (except "@every").
func ParseSchedule(spec string) (cron.Schedule, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("jobs: empty schedule")
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("jobs: bad schedule %q: %w", spec, err)
	}
	return s, nil
}

func (p *periodicState) next(after time.Time) time.Time {
	if p.every > 0 {
		return after.Truncate(p.every).Add(p.every)
	}
	return p.sched.Next(after.UTC())
}

// runPeriodic inserts every slot due by now. window is how far back a newly
// elected leader looks for a slot the previous leader may have missed.
func (c *Client) runPeriodic(ctx context.Context, now time.Time, window time.Duration) {
	for _, p := range c.periodic {
		if p.cursor.IsZero() || now.Sub(p.cursor) > window+p.every {
			p.cursor = now.Add(-window)
		}
		var due time.Time
		for s := p.next(p.cursor); !s.After(now); s = p.next(s) {
			due = s // only the latest due slot: older ones were missed
		}
		if due.IsZero() {
			continue
		}
		if err := c.insertSlot(ctx, p, due); err != nil {
			c.log.Warn("jobs: inserting periodic job", "name", p.job.Name, "slot", due, "err", err)
			continue
		}
		p.cursor = due
	}
}

func (c *Client) insertSlot(ctx context.Context, p *periodicState, slot time.Time) error {
	args, opts := p.job.Args(slot)
	var o InsertOpts
	if opts != nil {
		o = *opts
	}
	o.Unique = &UniqueOpts{Key: fmt.Sprintf("periodic\x00%s\x00%d", p.job.Name, slot.UnixNano())}
	md := map[string]any{"periodic": p.job.Name, "slot": slot.UTC().Format(time.RFC3339Nano)}
	for k, v := range o.Metadata {
		md[k] = v
	}
	o.Metadata = md
	pr, err := c.prepare(args, &o)
	if err != nil {
		return err
	}
	pr.uniqueKeep = true // a completed slot must not run again
	_, err = c.insertPrepared(ctx, c.pool, pr)
	return err
}
