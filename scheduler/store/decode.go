package store

// firstError is the first non-nil of errs: one undecodable node names
// itself, rather than a join of thousands.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
