// The Kotlin test of the uniffi bindings (issue 5), run by scripts/test-bindings.
//
// Against a real nats-server it starts (random port, temporary store, destroyed at the end):
// two workers share 20 partitions listed by a Kotlin PartitionSource; their assignment events
// reach a Kotlin EventListener; every partition is owned exactly once; a pin moves one of A's
// partitions to B and it stays there once unpinned; the leader stops and the other worker takes
// everything; a third joins and is drained. Measured load: reportLoad is accepted for held
// partitions and refused naming the partition otherwise; when one worker's partitions report
// 10x the load, the leader's listener gets a Rebalanced event naming that worker. A second
// server with token auth checks the auth options. With no network: plan / explain / config validation. Last, it
// prints the per-call cost of a sync and an async call.
//
// Usage: java -Djna.library.path=DIR -cp app.jar:jna.jar:coroutines.jar MainKt [NATS_SERVER]
// (or NATS_SERVER_BIN in the environment). Exits 1 on any failed check.

import java.io.File
import java.nio.file.Files
import java.util.concurrent.CopyOnWriteArrayList
import kotlin.system.exitProcess
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.delay
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import uniffi.parti_ffi.EventListener
import uniffi.parti_ffi.NatsOptions
import uniffi.parti_ffi.PartiException
import uniffi.parti_ffi.Partition
import uniffi.parti_ffi.PartitionSource
import uniffi.parti_ffi.PlanInput
import uniffi.parti_ffi.RebalanceListener
import uniffi.parti_ffi.Strategy
import uniffi.parti_ffi.Worker
import uniffi.parti_ffi.WorkerConfig
import uniffi.parti_ffi.WorkerEvent
import uniffi.parti_ffi.WorkerSlot
import uniffi.parti_ffi.WorkerState
import uniffi.parti_ffi.defaultWorkerConfig
import uniffi.parti_ffi.explain
import uniffi.parti_ffi.partiVersion
import uniffi.parti_ffi.ping
import uniffi.parti_ffi.plan
import uniffi.parti_ffi.resolveWorkerConfig
import uniffi.parti_ffi.startWorker
import uniffi.parti_ffi.strategyByName
import uniffi.parti_ffi.strategyNames
import uniffi.parti_ffi.validateConfig

const val PARTITIONS = 20
val ALL: Set<String> = (0 until PARTITIONS).map { "p$it" }.toSortedSet()

class CheckFailed(message: String) : Exception(message)

fun check(ok: Boolean, what: () -> String) {
    if (!ok) throw CheckFailed(what())
}

fun log(line: String) = println("[kotlin] $line")

/** Polls `condition` until it holds, or fails naming `what` after `timeoutMs`. */
fun waitFor(what: String, timeoutMs: Long = 20_000, condition: () -> Boolean) {
    val deadline = System.nanoTime() + timeoutMs * 1_000_000
    while (!condition()) {
        if (System.nanoTime() > deadline) throw CheckFailed("timed out after $timeoutMs ms waiting for: $what")
        Thread.sleep(20)
    }
}

/** A nats-server on a random loopback port with its own store, stopped by close(). */
class NatsServer(binary: String, extraArgs: List<String> = emptyList()) : AutoCloseable {
    private val dir: File = Files.createTempDirectory("parti-kotlin-nats").toFile()
    private val process: Process
    // Also stops the server if the JVM is killed (the script's timeout).
    private val hook = Thread { process.destroyForcibly() }
    val url: String

    init {
        process = ProcessBuilder(
            listOf(binary, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", dir.path, "--ports_file_dir", dir.path) + extraArgs,
        ).redirectErrorStream(true).redirectOutput(File(dir, "server.log")).start()
        Runtime.getRuntime().addShutdownHook(hook)
        val portsFile = File(dir, "nats-server_${process.pid()}.ports")
        var found: String? = null
        waitFor("nats-server to write ${portsFile.path}", 10_000) {
            check(process.isAlive) { "nats-server exited: " + File(dir, "server.log").readText() }
            found = if (portsFile.exists()) Regex("nats://[0-9.]+:[0-9]+").find(portsFile.readText())?.value else null
            found != null
        }
        url = found!!
    }

    /** SIGSTOP: the server keeps its connections but answers nothing until [resume]. */
    fun pause() = signal("STOP")

    /** SIGCONT after [pause]. */
    fun resume() = signal("CONT")

    private fun signal(name: String) {
        val kill = ProcessBuilder("kill", "-$name", process.pid().toString()).start()
        check(kill.waitFor() == 0) { "kill -$name ${process.pid()} failed" }
    }

    override fun close() {
        runCatching { Runtime.getRuntime().removeShutdownHook(hook) }
        process.destroy()
        if (!process.waitFor(5, java.util.concurrent.TimeUnit.SECONDS)) process.destroyForcibly()
        dir.deleteRecursively()
    }
}

/** The 20 partitions, listed from Kotlin; counts the leader's calls. */
class KotlinSource : PartitionSource {
    @Volatile var calls = 0
    override fun list(): List<Partition> {
        calls++
        return ALL.map { Partition(it, 100uL) }
    }
}

/** Throws a PartiException, then an IllegalStateException, then lists the partitions. */
class FlakySource : PartitionSource {
    @Volatile var calls = 0
    override fun list(): List<Partition> {
        calls++
        if (calls == 1) throw PartiException.Source("not yet")
        if (calls == 2) throw IllegalStateException("boom")
        return ALL.map { Partition(it, 100uL) }
    }
}

/** What one worker told its listener, and the ownership that follows from it. */
class Recorder(val name: String) : EventListener {
    // Read by the test thread while the listener thread appends: iteration must not race.
    val events: MutableList<WorkerEvent> = CopyOnWriteArrayList()
    @Volatile var owned: Set<String> = emptySet()
    @Volatile var lastGeneration = 0uL
    @Volatile var problem: String? = null

    override fun onEvent(event: WorkerEvent) {
        events.add(event)
        if (event is WorkerEvent.AssignmentChanged) {
            // Consistent with the previous one: old - revoked - lost + assigned = assignment.
            val expected = (owned - event.revoked.toSet() - event.lost.toSet()) + event.assigned
            if (expected != event.assignment.toSet()) problem = "$name: $owned - ${event.revoked} - ${event.lost} + ${event.assigned} != ${event.assignment}"
            if (event.generation < lastGeneration) problem = "$name: generation went back to ${event.generation}"
            lastGeneration = event.generation
            owned = event.assignment.toSet()
        }
    }

    fun assertSane() = check(problem == null) { problem!! }
}

fun fastConfig(prefix: String) = WorkerConfig(
    bucketPrefix = prefix,
    expectedWorkers = 2u,
    heartbeatMs = 250uL,
    leaseTtlMs = 2000uL,
    safetyMarginMs = 400uL,
    emergencyGraceMs = 200uL,
    coldStartWindowMs = 5000uL,
    plannedScaleWindowMs = 300uL,
    maxScaleDelayMs = 1000uL,
    restartGraceMs = 300uL,
    minRebalanceIntervalMs = 300uL,
    revokeTimeoutMs = 1000uL,
    shutdownTimeoutMs = 5000uL,
)

fun pureFunctions() {
    // WorkerConfig() leaves every Config field unset; the Rust side fills them from
    // Config::default(), which defaultWorkerConfig() spells out field by field.
    val core = defaultWorkerConfig()
    val resolved = resolveWorkerConfig(WorkerConfig())
    check(resolved == core) { "WorkerConfig() resolves to $resolved, not the Rust defaults $core" }
    check(core.bucketPrefix != null && core.leaseTtlMs != null && core.alertAfterMs?.size == 4) { "defaults not spelled out: $core" }
    check(core.loadHalfLifeMs != null && core.loadCooldownMs != null) { "load defaults not spelled out: $core" }
    try {
        validateConfig(WorkerConfig(loadHalfLifeMs = 0uL))
        throw CheckFailed("a zero load half-life was accepted")
    } catch (e: PartiException.InvalidConfig) {
        check(e.field == "load_half_life") { "wrong field named: ${e.field}" }
    }
    // The strategy names are the core's registry; each builds a strategy, others are refused.
    val names = strategyNames()
    check(names.isNotEmpty() && names.toSet().size == names.size) { "strategy names: $names" }
    validateConfig(fastConfig("kt"))
    try {
        validateConfig(WorkerConfig(leaseTtlMs = 500uL))
        throw CheckFailed("a 500 ms lease TTL was accepted")
    } catch (e: PartiException.InvalidConfig) {
        check(e.field == "lease_ttl") { "wrong field named: ${e.field}" }
    }
    val input = PlanInput(
        workers = listOf(WorkerSlot(1u, 1u), WorkerSlot(2u, 1u)),
        partitions = ALL.map { Partition(it, 100uL) },
    )
    val result = plan(Strategy.Balanced, input)
    check(result.assignment.keys == ALL) { "plan did not place every partition: ${result.assignment}" }
    check(result.byWorker.values.all { it.size == PARTITIONS / 2 }) { "plan is unbalanced: ${result.byWorker}" }
    check(result.summary.maxOverMean == 1.0) { "max/mean ${result.summary.maxOverMean}" }
    // Removing worker 2 moves exactly its half, as previews in the CLI show.
    val after = plan(Strategy.Balanced, input.copy(workers = listOf(WorkerSlot(1u, 1u)), previous = result.assignment))
    check(after.assignment.values.all { it == 1u }) { "worker 1 should own everything: ${after.byWorker}" }
    check(after.summary.moved == (PARTITIONS / 2).toULong()) { "moved ${after.summary.moved}" }
    for (name in names) {
        val placed = plan(strategyByName(name), input)
        check(placed.assignment.keys == ALL) { "$name did not place every partition" }
    }
    try {
        strategyByName("fastest")
        throw CheckFailed("an unknown strategy name was accepted")
    } catch (e: PartiException.InvalidArgument) {
        check(names.all { it in e.reason }) { "the error does not list every name: ${e.reason}" }
    }
    val why = explain(Strategy.ConsistentHash(64u), input, "p7")
    check(why.owner != null && why.reason.isNotEmpty()) { "explain: $why" }
    try {
        plan(Strategy.Balanced, input.copy(partitions = input.partitions + Partition("p0", 1uL)))
        throw CheckFailed("a duplicate partition was accepted")
    } catch (e: PartiException.InvalidPartition) {
        check(e.partition == "p0") { "wrong partition named: ${e.partition}" }
    }
    // Bad plan input names the field and what is allowed (the core's validate_input).
    fun refused(bad: PlanInput, field: String, needle: String) {
        try {
            plan(Strategy.Balanced, bad)
            throw CheckFailed("plan accepted a bad $field")
        } catch (e: PartiException.InvalidConfig) {
            check(e.field == field && needle in e.reason) { "wrong error for a bad $field: ${e.field}: ${e.reason}" }
        }
    }
    refused(input.copy(workers = listOf()), "workers", "at least one worker")
    refused(input.copy(workers = listOf(WorkerSlot(1u, 0u))), "workers", "capacity must be 1..=4294967295")
    refused(input.copy(previous = mapOf("zz" to 1u)), "previous", "partition zz is not in partitions")
    refused(input.copy(pins = mapOf("p0" to 9u)), "pins", "pinned to worker 9, which is not in workers")
    try {
        plan(Strategy.Balanced, input.copy(partitions = listOf(Partition("a".repeat(100_000), 1uL))))
        throw CheckFailed("a 100,000-character partition ID was accepted")
    } catch (e: PartiException.InvalidPartition) {
        check(e.partition.length < 64 && e.reason.length < 200) { "a long ID is not cut: ${e.partition.length} characters" }
    }
    check(plan(Strategy.Balanced, input.copy(partitions = listOf(Partition("x.y", 1uL)))).assignment.keys == setOf("x.y")) { "x.y refused" }
    // Measured load: worker 1 held p0..p9 at 3x the load of worker 2's p10..p19.
    val previous = ALL.associateWith { if (it.removePrefix("p").toInt() < 10) 1u else 2u }
    val loads = ALL.associateWith { if (previous[it] == 1u) 3.0 else 1.0 }
    // A balancing round, as the leader plans one: with a budget (without one a plan moves only
    // what a change forces).
    val round = input.copy(previous = previous, loads = loads, maxMoves = 100u)
    val byLoad = plan(Strategy.Balanced, round)
    check(byLoad.summary.maxOverMean < 1.1 && byLoad.summary.moved > 0uL) { "plan by load: ${byLoad.summary}" }
    val movedForLoad = ALL.first { byLoad.assignment[it] != previous[it] }
    val whyLoad = explain(Strategy.Balanced, round, movedForLoad)
    check(whyLoad.reason.startsWith("moved for load: worker 1 was at 1.50x mean")) { "explain by load: ${whyLoad.reason}" }
    try {
        plan(Strategy.Balanced, input.copy(loads = mapOf("p4" to Double.NaN)))
        throw CheckFailed("a NaN load was accepted")
    } catch (e: PartiException.InvalidPartition) {
        check(e.partition == "p4") { "wrong partition named: ${e.partition}" }
    }
    log("plan / explain / validateConfig: ok (parti ${partiVersion()}, no network)")
}

fun fleet(url: String) = runBlocking {
    val nats = NatsOptions(urls = listOf(url), pingIntervalMs = 500uL, requestTimeoutMs = 1000uL, reconnectMaxDelayMs = 200uL)
    val config = fastConfig("kt")
    val source = KotlinSource()
    val recA = Recorder("a")
    val recB = Recorder("b")
    val a = startWorker(nats, config, source, Strategy.Balanced, recA)
    val b = startWorker(nats, config, source, listener = recB)
    val workers = mutableListOf(a to recA, b to recB)
    // startWorker returns once the worker has claimed its ID.
    for (w in listOf(a, b)) {
        check(w.workerId() != null) { "no worker id right after startWorker" }
        check(w.state() != WorkerState.INIT && w.state() != WorkerState.CLAIMING_ID) { "state ${w.state()} right after startWorker" }
    }
    try {
        waitFor("both workers to own the 20 partitions between them (events)") {
            recA.owned.isNotEmpty() && recB.owned.isNotEmpty() && recA.owned.size + recB.owned.size == PARTITIONS && (recA.owned + recB.owned) == ALL
        }
        recA.assertSane(); recB.assertSane()
        check((recA.owned intersect recB.owned).isEmpty()) { "partitions owned twice: ${recA.owned intersect recB.owned}" }
        waitFor("handle assignments to match the events") {
            a.assignment().toSet() == recA.owned && b.assignment().toSet() == recB.owned
        }
        waitFor("exactly one leader") { a.isLeader() != b.isLeader() }
        check(a.workerId() != null && b.workerId() != null && a.workerId() != b.workerId()) { "worker ids ${a.workerId()} ${b.workerId()}" }
        check(source.calls > 0) { "the Kotlin partition source was never called" }
        log("two workers: a=${a.workerId()} owns ${recA.owned.size}, b=${b.workerId()} owns ${recB.owned.size}, leader=${if (a.isLeader()) "a" else "b"}, generation=${a.generation()}, source calls=${source.calls}")

        // A pin moves one of A's partitions to B (any worker may pin; the leader moves it).
        val ownedOnce = {
            (recA.owned intersect recB.owned).isEmpty() && recA.owned + recB.owned == ALL &&
                a.assignment().toSet() == recA.owned && b.assignment().toSet() == recB.owned
        }
        val bId = b.workerId()!!
        val pinned = a.assignment().first()
        b.pin(pinned, bId)
        waitFor("the pinned partition $pinned to move to b, every partition owned once") {
            pinned in b.assignment() && pinned in recB.owned && ownedOnce()
        }
        recA.assertSane(); recB.assertSane()
        // Unpinned, it stays on b (plans are sticky). The leader reads pins in KV order, so
        // once a later pin (of another of b's partitions, to a) has taken effect, the plan that
        // followed the unpin has run too.
        val seen = recB.events.size
        a.unpin(pinned)
        val other = b.assignment().first { it != pinned }
        a.pin(other, a.workerId()!!)
        waitFor("the barrier pin to move $other to a, every partition owned once") {
            other in a.assignment() && other in recA.owned && ownedOnce()
        }
        check(pinned in b.assignment() && pinned in recB.owned) { "unpinned $pinned left b: a=${a.assignment()} b=${b.assignment()}" }
        val revoked = recB.events.drop(seen).filterIsInstance<WorkerEvent.AssignmentChanged>().filter { pinned in it.revoked }
        check(revoked.isEmpty()) { "unpinned $pinned was revoked from b: $revoked" }
        a.unpin(other)
        recA.assertSane(); recB.assertSane()
        try {
            b.pin("a..b", bId)
            throw CheckFailed("pinning the invalid partition \"a..b\" succeeded")
        } catch (e: PartiException.InvalidPartition) {
            check(e.partition == "a..b") { "wrong partition named: ${e.partition}" }
        }
        log("pin: $pinned moved to b=$bId and stayed there unpinned; \"a..b\" refused (InvalidPartition)")

        // Stop the leader; the other one must lead and own everything.
        val (leader, leaderRec) = workers.first { it.first.isLeader() }
        val (survivor, survivorRec) = workers.first { !it.first.isLeader() }
        leader.stop()
        check(leader.isStopped()) { "stopped worker does not say so" }
        waitFor("the stopped worker's events to revoke everything and reach Shutdown") {
            leaderRec.owned.isEmpty() && leaderRec.events.any { it is WorkerEvent.StateChanged && it.to == WorkerState.SHUTDOWN }
        }
        waitFor("the survivor to own all 20 partitions and lead") {
            survivorRec.owned == ALL && survivor.isLeader() && survivor.assignment().toSet() == ALL
        }
        survivorRec.assertSane(); leaderRec.assertSane()
        check(survivorRec.events.any { it is WorkerEvent.LeadershipChanged && it.isLeader }) { "no leadership event on the survivor" }
        log("leader stopped: survivor ${survivor.workerId()} owns ${survivor.assignment().size}, state ${survivor.state()}, generation ${survivor.generation()}")

        // Refresh goes through the command channel and the leader re-reads the Kotlin source.
        val before = source.calls
        survivor.refreshPartitions()
        waitFor("the leader to re-read the source after refreshPartitions") { source.calls > before }
        try {
            leader.refreshPartitions()
            throw CheckFailed("refreshPartitions on a stopped worker succeeded")
        } catch (e: PartiException.Stopped) {
            // the same meaning as parti::Error::Stopped
        }
        try {
            leader.pin(ALL.first(), survivor.workerId()!!)
            throw CheckFailed("pin on a stopped worker succeeded")
        } catch (e: PartiException.Stopped) {
            // pins go through the worker's command channel too
        }

        // A third worker joins and gets a share; draining it hands the share back.
        val recC = Recorder("c")
        val c = startWorker(nats, config, source, listener = recC)
        workers += c to recC
        waitFor("the joining worker to get a share") {
            recC.owned.isNotEmpty() && recC.owned.size + survivorRec.owned.size == PARTITIONS && (recC.owned + survivorRec.owned) == ALL
        }
        val cId = c.workerId()
        log("worker $cId joined: owns ${recC.owned.size}, survivor ${survivorRec.owned.size}")
        c.drain()
        waitFor("the drained worker to be empty and the survivor to own everything again") {
            recC.owned.isEmpty() && survivorRec.owned == ALL && recC.events.any { it is WorkerEvent.Drained }
        }
        c.stop()
        recC.assertSane(); survivorRec.assertSane()
        log("worker $cId drained and stopped: survivor owns ${survivor.assignment().size}")

        measure(survivor)

        survivor.stop()
        check(survivor.isStopped()) { "survivor did not stop" }
    } finally {
        workers.forEach { (w, _) -> runCatching { w.stop() }; w.close() }
    }
}

/** Reports every held partition's load every 100 ms: 10.0 for the [hot] ones, 1.0 else. */
suspend fun reportLoads(w: Worker, hot: Set<String>) {
    try {
        w.reportLoad(w.assignment().associateWith { if (it in hot) 10.0 else 1.0 })
    } catch (e: PartiException.InvalidPartition) {
        // a partition moved between reading the assignment and reporting: next time
    }
}

/** Measured load: reportLoad accepted and refused (naming the partition, stored nothing);
 *  one worker's partitions at 10x the load make the leader report a Rebalanced round. */
fun measuredLoad(url: String) = runBlocking {
    val nats = NatsOptions(urls = listOf(url), pingIntervalMs = 500uL, requestTimeoutMs = 1000uL, reconnectMaxDelayMs = 200uL)
    val config = fastConfig("ktload").copy(loadHalfLifeMs = 500uL, loadCooldownMs = 1000uL, maxMovesPerRound = 4u)
    val recA = Recorder("load-a")
    val recB = Recorder("load-b")
    val a = startWorker(nats, config, KotlinSource(), listener = recA)
    val b = startWorker(nats, config, KotlinSource(), listener = recB)
    try {
        waitFor("both workers to own the 20 partitions between them") {
            recA.owned.isNotEmpty() && recB.owned.isNotEmpty() && (recA.owned + recB.owned) == ALL &&
                a.assignment().toSet() == recA.owned && b.assignment().toSet() == recB.owned
        }
        val mine = a.assignment()
        val theirs = b.assignment()
        a.reportLoad(mine.associateWith { 1.0 })
        for ((bad, named) in listOf(
            mapOf(mine[0] to 5.0, mine[1] to -1.0) to mine[1],
            mapOf(mine[0] to 5.0, mine[1] to Double.NaN) to mine[1],
            mapOf(mine[0] to 5.0, mine[1] to Double.POSITIVE_INFINITY) to mine[1],
            mapOf(mine[0] to 5.0, theirs[0] to 1.0) to theirs[0],
            mapOf(mine[0] to 5.0, "a..b" to 1.0) to "a..b",
        )) {
            try {
                a.reportLoad(bad)
                throw CheckFailed("reportLoad($bad) was accepted")
            } catch (e: PartiException.InvalidPartition) {
                check(e.partition == named) { "reportLoad($bad) named ${e.partition}, not $named" }
            }
        }
        log("reportLoad: accepted for held partitions; a negative, NaN, infinite, unheld or malformed one refused naming it")

        val hot = mine.toSet()
        val hotId = a.workerId()!!
        val reporters = listOf(a, b).map { w ->
            launch(kotlinx.coroutines.Dispatchers.IO) {
                while (isActive) {
                    reportLoads(w, hot)
                    delay(100) // the reporting cadence, not a synchronisation
                }
            }
        }
        val rounds = { (recA.events + recB.events).filterIsInstance<WorkerEvent.Rebalanced>() }
        try {
            waitFor("a Rebalanced event from the leader") { rounds().isNotEmpty() }
        } finally {
            reporters.forEach { it.cancelAndJoin() }
        }
        val round = rounds().first()
        check(round.worker == hotId) { "the round names worker ${round.worker}, not the hot $hotId: $round" }
        // 10 partitions x 10 against 10 x 1: 100 / 55 = 1.82 x the mean.
        check(Math.abs(round.maxOverMean - 100.0 / 55.0) < 0.02) { "max/mean ${round.maxOverMean}" }
        check(round.moved in 1u..4u) { "a round of budget 4 moved ${round.moved}" }
        recA.assertSane(); recB.assertSane()
        log("measured load: Rebalanced(generation ${round.generation}, moved ${round.moved}, worker ${round.worker} at %.2fx mean)".format(round.maxOverMean))
    } finally {
        for (w in listOf(a, b)) { runCatching { w.stop() }; w.close() }
    }
}

/** The auth options cross the FFI: a token server refuses a wrong token and accepts the right one. */
fun auth(url: String) = runBlocking {
    val config = fastConfig("auth").copy(expectedWorkers = 1u)
    try {
        startWorker(NatsOptions(urls = listOf(url), token = "wrong"), config, KotlinSource())
        throw CheckFailed("a wrong token was accepted")
    } catch (e: PartiException.Nats) {
        check(e.reason.contains("authorization")) { "unexpected reason: ${e.reason}" }
    }
    try {
        startWorker(NatsOptions(urls = listOf(url), user = "only-a-user"), config, KotlinSource())
        throw CheckFailed("a user without a password was accepted")
    } catch (e: PartiException.InvalidArgument) {
        // refused before connecting, as the Rust NatsOptions does
    }
    // The source fails twice (a PartiException, then any exception): warnings, then a retry.
    val flaky = FlakySource()
    val rec = Recorder("auth")
    startWorker(NatsOptions(urls = listOf(url), token = "s3cret"), config, flaky, listener = rec).use { w ->
        waitFor("the token-authenticated worker to own everything") { w.assignment().size == PARTITIONS && rec.owned == ALL }
        val warnings = rec.events.filterIsInstance<WorkerEvent.Warning>().map { it.message }
        check(warnings.any { "not yet" in it } && warnings.any { "IllegalStateException" in it || "boom" in it }) {
            "source failures not reported as warnings: $warnings"
        }
        w.stop()
    }
    log("auth options: wrong token refused (Nats), user without password refused (InvalidArgument), right token works; source exceptions became warnings and were retried")
}

/** A rebalance listener in Kotlin (suspend functions): records every call; `onRevoked` throws
 *  when [failRevoke] is set, to check that a throwing callback confirms its revoke at once. */
class KotlinRebalanceListener(private val failRevoke: Boolean = false) : RebalanceListener {
    val calls: MutableList<Pair<String, Set<String>>> = CopyOnWriteArrayList()

    override suspend fun onAssigned(partitions: List<String>) {
        delay(1) // suspends: a coroutine, not a blocked thread
        calls.add("assigned" to partitions.toSet())
    }

    override suspend fun onRevoked(partitions: List<String>) {
        calls.add("revoked" to partitions.toSet())
        if (failRevoke) throw IllegalStateException("revoke failed on purpose")
    }

    override suspend fun onLost(partitions: List<String>) {
        calls.add("lost" to partitions.toSet())
    }

    fun of(kind: String): Set<String> = calls.filter { it.first == kind }.flatMap { it.second }.toSet()
}

/** The rebalance listener's rule, the same as in Rust and Python: a throwing onRevoked is
 *  confirmed at once (a listener_failed warning, no revoke timeout); a fence calls onLost, not
 *  onRevoked. */
fun rebalanceListener(server: NatsServer) = runBlocking {
    val nats = NatsOptions(urls = listOf(server.url), pingIntervalMs = 500uL, requestTimeoutMs = 500uL, reconnectMaxDelayMs = 200uL)
    // A revoke timeout far above the stop's duration: a stop that waited for it would fail.
    val config = fastConfig("ktl").copy(expectedWorkers = 1u, revokeTimeoutMs = 60_000uL, shutdownTimeoutMs = 5_000uL)

    val failing = KotlinRebalanceListener(failRevoke = true)
    val rec = Recorder("failing-revoke")
    startWorker(nats, config, KotlinSource(), listener = rec, rebalanceListener = failing).use { w ->
        waitFor("onAssigned to be told all 20 partitions") { failing.of("assigned") == ALL }
        w.stop() // bounded by shutdownTimeoutMs (5 s): it must not wait for the 60 s revoke timeout
        waitFor("the stopped worker's events to reach Shutdown") {
            rec.events.any { it is WorkerEvent.StateChanged && it.to == WorkerState.SHUTDOWN }
        }
        val kinds = { rec.events.filterIsInstance<WorkerEvent.Warning>().map { it.kind } }
        waitFor("a listener_failed warning for the throwing onRevoked (calls: ${failing.calls})", 10_000) {
            "listener_failed" in kinds()
        }
        check("listener_failed" in kinds()) { "a throwing onRevoked was not reported: ${rec.events}" }
        check("revoke_timed_out" !in kinds()) { "a throwing onRevoked waited for the revoke timeout: ${kinds()}" }
        check(failing.of("revoked") == ALL && failing.of("lost").isEmpty()) { "calls: ${failing.calls}" }
    }

    val listener = KotlinRebalanceListener()
    val rec2 = Recorder("fenced")
    startWorker(nats, config.copy(bucketPrefix = "ktf"), KotlinSource(), listener = rec2, rebalanceListener = listener).use { w ->
        waitFor("onAssigned to be told all 20 partitions") { listener.of("assigned") == ALL }
        server.pause()
        try {
            waitFor("the fenced worker to call onLost with everything it held") { listener.of("lost") == ALL }
        } finally {
            server.resume()
        }
        check(listener.of("revoked").isEmpty()) { "a fence revoked instead of losing: ${listener.calls}" }
        // Events reach their listener on a thread of their own, after the rebalance callback.
        val lost = { rec2.events.filterIsInstance<WorkerEvent.AssignmentChanged>().flatMap { it.lost }.toSet() }
        waitFor("the event to report the partitions lost", 10_000) { lost() == ALL }
        check(lost() == ALL) { "the event did not report the partitions lost: ${lost()}" }
        waitFor("a fenced warning", 10_000) { rec2.events.filterIsInstance<WorkerEvent.Warning>().any { it.kind == "fenced" } }
        waitFor("the healed worker to own everything again") { w.assignment().toSet() == ALL }
        w.stop()
    }
    log("rebalance listener: a throwing onRevoked is confirmed at once (listener_failed, no revoke timeout); a fence calls onLost with ${ALL.size} partitions, never onRevoked")
}

fun measure(worker: Worker) = runBlocking {
    val syncN = 200_000
    val asyncN = 5_000
    repeat(20_000) { worker.isLeader() }
    var t = System.nanoTime()
    var leaders = 0
    repeat(syncN) { if (worker.isLeader()) leaders++ }
    val syncUs = (System.nanoTime() - t) / 1000.0 / syncN
    val cfg = fastConfig("kt")
    repeat(2_000) { validateConfig(cfg) }
    t = System.nanoTime()
    repeat(20_000) { validateConfig(cfg) }
    val recordUs = (System.nanoTime() - t) / 1000.0 / 20_000
    repeat(500) { ping(it.toULong()) }
    t = System.nanoTime()
    var sum = 0uL
    for (i in 0 until asyncN) sum += ping(i.toULong())
    val asyncUs = (System.nanoTime() - t) / 1000.0 / asyncN
    check(leaders == syncN && sum == (asyncN.toULong() * (asyncN - 1).toULong()) / 2uL) { "measurement calls returned wrong values" }
    log("kotlin per-call: sync %.2f µs (Worker.isLeader), %.2f µs (validateConfig, 27-field record), async %.1f µs (ping)".format(syncUs, recordUs, asyncUs))
}

fun main(args: Array<String>) {
    val binary = args.firstOrNull() ?: System.getenv("NATS_SERVER_BIN") ?: "nats-server"
    try {
        pureFunctions()
        NatsServer(binary).use { server ->
            log("nats-server at ${server.url}")
            fleet(server.url)
            measuredLoad(server.url)
            rebalanceListener(server)
        }
        NatsServer(binary, listOf("--auth", "s3cret")).use { server -> auth(server.url) }
        log("all checks passed")
    } catch (e: Throwable) {
        System.err.println("[kotlin] FAILED: $e")
        e.printStackTrace()
        exitProcess(1)
    }
    exitProcess(0)
}
