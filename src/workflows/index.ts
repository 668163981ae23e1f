// The workflow bundle's entry point: every workflow type the worker serves.
export { TrainingPipeline } from './pipeline';
export { EraseSubject } from './erasure';
export { RollbackModel } from './rollback';
export { ScheduledRun, VolumeRun } from './scheduled';
