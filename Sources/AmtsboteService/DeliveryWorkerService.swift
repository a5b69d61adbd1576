import AmtsbotePipeline
import ServiceLifecycle

/// Delivery workers as a service of a `ServiceGroup`: they deliver until the group shuts down gracefully, then stop
/// claiming, and the deliveries in flight finish and are recorded. Listed before the listener, they stop after it
/// has drained (a group stops its services in reverse order).
public struct DeliveryWorkerService: Service {
    public let worker: DeliveryWorker
    private let stop = StopSignal()

    public init(worker: DeliveryWorker) {
        self.worker = worker
    }

    public func run() async throws {
        let stop = stop
        try await withGracefulShutdownHandler {
            _ = try await worker.run(until: stop)
        } onGracefulShutdown: {
            stop.stop()
        }
    }
}
