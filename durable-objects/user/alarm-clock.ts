// The User DO's one alarm, shared by its users (a Durable Object has a single alarm): the presence timeout
// of sync (user/sync.ts) and push delivery's retries and lease keep-alive (user/push-delivery.ts). Each asks
// to be woken no later than some time; the earliest wins, and when the alarm fires every user looks at
// what is due and asks again for its next time.
export class AlarmClock {
  /** The pending alarm as last read or set (undefined: not read yet; null: none). */
  private at: number | null | undefined;

  constructor(private readonly storage: DurableObjectStorage) {}

  /** Makes sure the alarm fires no later than `at` (ms since the epoch). */
  async wakeBy(at: number): Promise<void> {
    if (this.at === undefined) this.at = await this.storage.getAlarm();
    if (this.at !== null && this.at <= at) return;
    this.at = at;
    await this.storage.setAlarm(at);
  }

  /** The alarm fired: workerd cleared it. Called first thing in `alarm()`. */
  fired(): void {
    this.at = null;
  }
}
