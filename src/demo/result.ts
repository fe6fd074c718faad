// What one demo run measured, per policy and per stage: the report renders it and the JSON file stores it.

export interface StageResult {
  stage: string;
  job: string;
  steps: number;
  events: number;
  finalLoss: number;
  /** The last probe of the job: drift on the held-out probe set against the base model. */
  probe: { numberMassDelta: number; klToBase: number } | null;
  /** Accuracy on every target and held-out eval set after this stage. */
  accuracy: Record<string, number>;
  deltaForgetting: number;
  numberMassDelta: number;
}

export interface PolicyResult {
  policy: string;
  stages: StageResult[];
  /** Mean over stages of (accuracy on the stage's target right after it − the base's accuracy on it). */
  deltaLearning: number;
  /** Mean over stages of the mean held-out accuracy change from the base (negative = forgotten). */
  deltaForgetting: number;
  /** Mean over stages of the number_mass change on held-out eval sets (bias drift). */
  numberMassDrift: number;
}

export interface DemoResult {
  mode: 'quick' | 'full';
  lr: number;
  steps: number;
  baseModel: string;
  baseAccuracy: Record<string, number>;
  targets: string[];
  heldout: string[];
  policies: PolicyResult[];
  seconds: number;
  reportPath: string;
  jsonPath: string;
}
