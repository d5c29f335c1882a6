package api

import (
	"fmt"
	"strconv"
	"time"
)

// Bounds of GET /api/job/{job}/schedule's ?count.
const (
	defaultScheduleCount = 1
	maxScheduleCount     = 20
)

// JobSchedule is the answer of GET /api/job/{job}/schedule: when the job's
// cron fires next, read in the job's time zone. It is computed from the
// job's configuration alone (the cron package), not asked of the term, so
// it says when the cron fires, not whether a fire will launch (a disabled
// job's or app's fires are skipped; a misfire may add one).
type JobSchedule struct {
	JobName  string `json:"jobName"`
	Cron     string `json:"cron"`
	TimeZone string `json:"timeZone"`
	// Disabled says whether the job itself is disabled (its app's flag
	// is GET /api/app/{app}/disable).
	Disabled bool `json:"disabled"`
	// NextFireTimes are the next fire times after now, soonest first, at
	// most ?count of them: none for a DAEMON job without a cron, or a
	// cron whose years are over.
	NextFireTimes []time.Time `json:"nextFireTimes"`
}

// jobSchedule serves GET /api/job/{job}/schedule?count=N (1 to
// maxScheduleCount, 1 by default).
func (s *server) jobSchedule(c *call) (any, error) {
	count, err := scheduleCount(c.r.URL.Query().Get("count"))
	if err != nil {
		return nil, err
	}
	job, err := s.svc.Job(c.ctx, c.params["job"])
	if err != nil {
		return nil, err
	}
	disabled, err := s.svc.JobDisabled(c.ctx, job.JobName)
	if err != nil {
		return nil, err
	}
	// Check parses the cron in the job's zone, with the defaults applied,
	// exactly as the term does.
	spec, err := job.Check()
	if err != nil {
		return nil, err
	}
	out := JobSchedule{
		JobName:       spec.Job.JobName,
		Cron:          spec.Job.Cron,
		TimeZone:      spec.Job.TimeZone,
		Disabled:      disabled,
		NextFireTimes: []time.Time{},
	}
	if spec.Schedule == nil {
		return out, nil
	}
	t := s.now()
	for range count {
		if t = spec.Schedule.Next(t); t.IsZero() {
			break
		}
		out.NextFireTimes = append(out.NextFireTimes, t)
	}
	return out, nil
}

func scheduleCount(q string) (int, error) {
	if q == "" {
		return defaultScheduleCount, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > maxScheduleCount {
		return 0, &badRequestError{field: "count", err: fmt.Errorf("count must be a whole number from 1 to %d, not %q", maxScheduleCount, q)}
	}
	return n, nil
}
