package api

// quarantined serves GET /api/quarantine: the stored configurations that
// fail validation, read from the store by whichever process answers.
func (s *server) quarantined(c *call) (any, error) {
	q, err := s.svc.Quarantined(c.ctx)
	return nonNil(q), err
}

// workers serves GET /api/workers: the processes that run tasks, their
// capacity and the tasks placed on them.
func (s *server) workers(c *call) (any, error) {
	w, err := s.svc.Workers(c.ctx)
	return nonNil(w), err
}
