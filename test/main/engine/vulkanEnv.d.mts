export declare const SWIFTSHADER_ICD: string
export declare function useSoftwareVulkanWhereNoDriver(): void
