package integration

import (
	"os/exec"
	"testing"
	"time"
)

func TestHostsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	env := newHostsEnv(t, hostsBackends[0])
	r := newHostsRig(t, env, 1, func(string) []string { return []string{"--executor", "local"} })
	r.registerApp()
	tick := r.registerEverySecond("tick", 2, 3)
	r.waitRuns(tick, 3, time.Minute)
	h := r.hosts[0]
	out, _ := exec.Command("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}} {{json .NetworkSettings.Ports}} {{json .HostConfig.NetworkMode}}", h.ctr.GetContainerID()).CombinedOutput()
	t.Logf("inspect: %s", out)
	h.cut()
	out, _ = exec.Command("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}} {{json .NetworkSettings.Ports}}", h.ctr.GetContainerID()).CombinedOutput()
	t.Logf("inspect: %s", out)
	var st apiStatus
	if err := r.get(h, "/api/leader", 2*time.Second, &st); err != nil {
		t.Errorf("API of a cut host: %v", err)
	}
	t.Logf("cut host says %+v", st)
	time.Sleep(2 * time.Second)
	h.heal()
	h.pause()
	time.Sleep(2 * time.Second)
	h.unpause()
	h.killProcess()
	time.Sleep(3 * time.Second)
	r.waitAnswers(h, time.Minute)
	r.waitLeader(time.Minute)
	rep := r.check([]*rigJob{tick}, time.Now().Add(-2*time.Second).UnixMilli(), time.Minute)
	t.Logf("%s", rep.Summary())
}
