package worker_test

func stopEmbeddedEtcd() {}
