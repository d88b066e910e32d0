import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";

/**
 * A V8 CPU profile of a window of this process's life (the inspector's Profiler domain), so that a
 * profile shows the measured load and not the start-up (module loading, tsx compilation) that
 * --cpu-prof also records.
 */
export class WindowProfiler {
  private session: Session | undefined;

  async start(intervalUs: number): Promise<void> {
    if (this.session) throw new Error("a profile is already being taken");
    const session = new Session();
    session.connect();
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: intervalUs });
    await session.post("Profiler.start");
    this.session = session;
  }

  async stop(file: string): Promise<void> {
    const session = this.session;
    if (!session) throw new Error("no profile is being taken");
    this.session = undefined;
    try {
      const { profile } = await session.post("Profiler.stop");
      await writeFile(file, JSON.stringify(profile));
    } finally {
      session.disconnect();
    }
  }
}
