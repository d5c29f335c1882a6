// Package mesosfake is a fake Apache Mesos master for tests: it speaks the
// real v1 scheduler HTTP API (POST /api/v1/scheduler) with mesos-go's own
// types and codecs, and simulates agents and the command executor, so that a
// scheduler built on mesos-go (httpcli, httpsched, calls, controller) can be
// tested without Mesos, which is retired.
//
// # Starting one
//
//	m, err := mesosfake.New(mesosfake.Config{})      // 127.0.0.1, free port, real defaults
//	defer m.Close()                                   // ends streams and goroutines
//	agentID, _ := m.AddAgent(mesosfake.AgentSpec{Hostname: "a1", CPUs: 4, MemMB: 4096})
//	cli := httpcli.New(httpcli.Endpoint(m.SchedulerURL()), httpcli.Codec(codecs.ByMediaType[codecs.MediaTypeProtobuf]))
//	caller := httpsched.NewCaller(cli)               // ... then calls.Subscribe etc.
//
// # Protocol, as the real master
//
//   - Codecs: protobuf and JSON, chosen by Content-Type (415 otherwise); the
//     SUBSCRIBE response codec by Accept (JSON preferred, as the real master;
//     406 if neither).
//   - SUBSCRIBE: 200, Content-Type of the codec, chunked (no Content-Length),
//     Mesos-Stream-Id, RecordIO frames flushed one by one. First event
//     SUBSCRIBED{framework_id, heartbeat_interval_seconds, master_info}, then
//     a HEARTBEAT at once and every Config.HeartbeatInterval (15s). Problems
//     with FrameworkInfo, and re-subscribing a removed framework ("Framework
//     has been removed"), are an ERROR event in a 200 stream that then ends.
//   - Other calls: 202 and an empty body; 400 for a malformed call, an unknown
//     framework, a missing or wrong Mesos-Stream-Id; 403 for a framework that
//     is not subscribed (mesos-go's one "subscription lost" error).
//   - A standby master (Config.Standby, SetLeader) answers 307 with
//     Location //host:port/api/v1/scheduler, or 503 when it knows no leader.
//     Note that mesos-go v0.0.11 follows the 307 for SUBSCRIBE only (see
//     TestRedirectIsFollowedForSubscribeOnly): schedulers must talk to the
//     leader's URL.
//   - Failover: SUBSCRIBE with a known id takes the framework over (the old
//     stream gets ERROR "Framework failed over" and ends; in-flight updates
//     are re-sent; offers re-issued). SUBSCRIBE with an id the master never
//     saw is accepted under that id, as after a master failover. When a
//     stream ends, the failover_timeout starts (Config.FailoverTimeout
//     overrides it); when it expires the framework is removed, its tasks
//     killed, and its id refused.
//   - Offers: every active agent's free resources (cpus, mem, disk as
//     unreserved "*" scalars with allocation_info) go to the connected,
//     unsuppressed frameworks at once (not in 1s batches). DECLINE and the
//     unused part of an ACCEPT install the allocator's refuse filter
//     (refuse_seconds, default 5: withheld while the refused resources
//     contain what would be offered). REVIVE clears filters and suppression;
//     SUPPRESS keeps outstanding offers.
//   - ACCEPT with LAUNCH: invalid offers (unknown, someone else's, two agents)
//     → TASK_DROPPED (TASK_LOST without PARTITION_AWARE) with
//     REASON_INVALID_OFFERS for each task; an invalid task (duplicate id,
//     wrong agent, not exactly one of command/executor, more resources than
//     offered) → TASK_ERROR with REASON_TASK_INVALID. Both come from the
//     master: no uuid, not to be acknowledged. LAUNCH_GROUP is refused with
//     TASK_ERROR; other operations are ignored.
//   - Tasks: TASK_STAGING, then the executor's TASK_STARTING and
//     TASK_RUNNING (Config.HoldStaging waits for StartTask); then RUNNING
//     until FinishTask, FailTask, UpdateTask, KILL (TASK_KILLING first with
//     TASK_KILLING_STATE, then TASK_KILLED), Config.FinishAfter, the task's
//     max_completion_time (counted from TASK_RUNNING: TASK_FAILED with
//     REASON_MAX_COMPLETION_TIME_REACHED), or the loss of the agent or the
//     framework. Executor updates carry 16-byte uuids
//     and are gated per task: the next goes out only after the ACKNOWLEDGE of
//     the one before; unacknowledged ones are retried (10s doubling to
//     10min, Config.StatusUpdateRetry) and re-sent on re-subscription. The
//     master forgets a task when its terminal update is acknowledged.
//   - RECONCILE: implicit → the latest state of every known task; explicit,
//     per task → known: latest state; unknown and agent_id names an active
//     agent: TASK_GONE; an unreachable one: TASK_UNREACHABLE; a gone one:
//     TASK_GONE_BY_OPERATOR; else TASK_UNKNOWN; the last four are TASK_LOST
//     without PARTITION_AWARE. REASON_RECONCILIATION, no uuid. KILL of an
//     unknown task gets the same answer. So a finished task whose terminal
//     update was acknowledged reconciles as TASK_GONE (LOST), as on Mesos.
//   - LoseAgent: offers rescinded, tasks TASK_UNREACHABLE (LOST) with
//     REASON_AGENT_REMOVED, FAILURE{agent_id}; the tasks stay known.
//     RemoveAgent (agent shut down): likewise with TASK_GONE, tasks and agent
//     forgotten. MarkAgentGone (operator): TASK_GONE_BY_OPERATOR with
//     REASON_AGENT_REMOVED_BY_OPERATOR, the agent remembered as gone.
//   - GET /state (and /master/state): frameworks[] with tasks and executors,
//     completed_frameworks[], slaves[].{id, pid, hostname, resources}.
//     GET /redirect: 307 to //leader-host:port.
//   - RegisterInZooKeeper: the ephemeral sequential znode
//     <path>/json.info_<seq> holding JSON(MasterInfo), as a real master.
//
// # Not simulated
//
// SHUTDOWN, MESSAGE, REQUEST, UPDATE_FRAMEWORK, inverse offers and operation
// feedback are answered 202 and otherwise ignored. No authentication, no
// ports or other range/set resources, no reservations or volumes, no
// LAUNCH_GROUP, no agent re-registration (an unreachable agent never comes
// back), no "agent not yet re-registered" reconciliation case, no
// master-side offer timeout (see RescindOffers). The JSON codec is
// mesos-go's own on both sides, so it cannot catch differences between
// mesos-go's and the real master's JSON.
//
// # Tests
//
// Every method is safe for concurrent use. State changes caused by a call
// are applied before the call's response is written, so after a call
// returns, Tasks, Frameworks and OutstandingOffers reflect it; events it
// causes are queued on the stream at that moment. WaitCall, WaitCalls and
// WaitUntil wait without polling. A ManualClock (Config.Clock) makes every
// timer — heartbeats, failover timeouts, refuse filters, retries,
// FinishAfter, max_completion_time — fire only on Advance.
package mesosfake
