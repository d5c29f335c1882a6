package api

// quarantined serves GET /api/quarantine: the stored configurations that
// fail validation, read from the store by whichever process answers.
func (s *server) quarantined(c *call) (any, error) {
	q, err := s.svc.Quarantined(c.ctx)
	return nonNil(q), err
}
